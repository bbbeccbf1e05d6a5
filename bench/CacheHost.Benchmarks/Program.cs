using BenchmarkDotNet.Running;

BenchmarkSwitcher.FromAssembly(typeof(CacheHost.Benchmarks.DistCacheCodecBenchmarks).Assembly).Run(args);
