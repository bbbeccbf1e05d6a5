using System.Net.Sockets;
using System.Text;
using Mono.Unix.Native;

namespace CacheHost.Systemd.Tests;

/// <summary>
/// The control socket is byte-exact (issue 21, item 6): lines are not decoded as UTF-8, so bytes that are not
/// UTF-8 come back from <c>echo</c> unchanged and reach a supervised child's argv unchanged, over the real
/// socket, through the real program and <c>cachehost ctl</c>.
/// </summary>
public sealed class ControlBytesTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    // Not UTF-8 (FF FE, a lone continuation byte 80), then valid UTF-8 (C3 A9) and a lone lead byte (C3).
    private static readonly byte[] Odd = [0xFF, 0xFE, 0x80, (byte)'x', 0xC3, 0xA9, 0xC3];

    [Fact]
    public async Task Echo_and_service_args_keep_every_byte_to_the_childs_argv()
    {
        var dir = Wire.TempDir();
        using var notify = FakeNotifySocket.Abstract();
        using var daemon = SupervisorControlTests.StartSupervisor(dir, notify);
        using var control = Wire.ConnectUnix($"{dir}/control.sock");

        // echo: the bytes after "echo<TAB>" come back as they are (UTF-8 decoding turned FF FE into EF BF BD).
        Assert.Equal(Odd, ExchangeBytes(control, [.. "echo\t"u8, .. Odd])[0]);

        // service.args: the child's argv[1] is the sent bytes; the service.args event and statedump show them too.
        var output = $"{dir}/argv1";
        var args = Concat("service.args\targs\t/bin/sh\t-c\tprintf %s \"$1\" > ", Encoding.ASCII.GetBytes(output), "\tsh\t", Odd);
        var replies = ExchangeBytes(control, args, "service.start\targs"u8.ToArray());
        Assert.Contains(replies, r => r.AsSpan().SequenceEqual(Concat("service.args\targs\t/bin/sh\t-c\tprintf %s \"$1\" > ", Encoding.ASCII.GetBytes(output), "\tsh\t", Odd)));
        var deadline = DateTime.UtcNow + Timeout;
        while (!(File.Exists(output) && File.ReadAllBytes(output).Length >= Odd.Length) && DateTime.UtcNow < deadline)
        {
            Thread.Sleep(20);
        }

        Assert.Equal(Odd, File.ReadAllBytes(output));
        var dump = ExchangeBytes(control, "statedump"u8.ToArray());
        Assert.Contains(dump, l => l.AsSpan().EndsWith(Concat("\tsh\t", Odd)) && l.AsSpan().StartsWith("service.args\targs\t"u8));

        // An error line quotes the first 30 bytes of the command unchanged.
        var bad = Concat("service.start\t", Odd, Odd, Odd);
        var error = Assert.Single(ExchangeBytes(control, bad));
        Assert.True(error.AsSpan().EndsWith(Concat(", for command \"", bad[..30], "...\"")), Encoding.Latin1.GetString(error));

        // cachehost ctl: the words come from the raw argv and the reply goes to stdout unchanged.
        var start = DaemonProcess.StartInfo(
            ["-c", "exec \"$@\" \"$(printf '\\377\\376\\200x\\303\\251\\303')\"", "sh", .. DaemonProcess.ProgramCommand(), "ctl", "--socket", $"{dir}/control.sock", "echo"],
            fileName: "/bin/sh");
        using (var ctl = System.Diagnostics.Process.Start(start)!)
        {
            ctl.StandardInput.Close();
            using var stdout = new MemoryStream();
            var copy = ctl.StandardOutput.BaseStream.CopyToAsync(stdout);
            var stderr = ctl.StandardError.ReadToEndAsync();
            Assert.True(ctl.WaitForExit(30_000), "ctl did not finish");
            await copy.WaitAsync(Timeout);
            Assert.True(ctl.ExitCode == 0, await stderr);
            Assert.Equal([.. Odd, (byte)'\n'], stdout.ToArray());
        }

        daemon.Signal(Signum.SIGTERM);
        Assert.Equal(0, daemon.WaitForExit(Timeout));
    }

    private static byte[] Concat(params object[] parts) =>
        parts.SelectMany(p => p is string s ? Encoding.ASCII.GetBytes(s) : (byte[])p).ToArray();

    /// <summary>Sends byte lines, then echo with a marker; returns the raw reply lines before the marker.</summary>
    private static List<byte[]> ExchangeBytes(Socket socket, params byte[][] lines)
    {
        var marker = "sync-" + Guid.NewGuid().ToString("N");
        socket.Send(lines.SelectMany(l => l.Append((byte)'\n')).Concat(Encoding.ASCII.GetBytes($"echo\t{marker}\n")).ToArray());
        var replies = new List<byte[]>();
        var current = new List<byte>();
        var one = new byte[1];
        while (true)
        {
            if (socket.Receive(one) == 0)
            {
                throw new IOException("connection closed");
            }

            if (one[0] != (byte)'\n')
            {
                current.Add(one[0]);
                continue;
            }

            var line = current.ToArray();
            current.Clear();
            if (line.AsSpan().SequenceEqual(Encoding.ASCII.GetBytes(marker)))
            {
                return replies;
            }

            replies.Add(line);
        }
    }
}
