using CacheHost;

return CommandDispatcher.Run(args);
