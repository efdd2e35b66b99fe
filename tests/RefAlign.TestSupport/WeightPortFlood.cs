using System.Net;
using System.Net.Sockets;

namespace RefAlign.TestSupport;

/// <summary>
/// Hostile connections to a weight port: <c>connections</c> of them from outside loopback addresses (16 of them, from
/// <c>127.0.0.{firstAddress}</c>: the whole 127/8 is local on Linux, and none is a silo's), none ever sending a byte, each
/// reopened the moment the server closes it. Runs until disposed.
/// </summary>
public sealed class WeightPortFlood : IAsyncDisposable
{
    readonly CancellationTokenSource _stop = new();
    readonly List<Task> _loops;
    int _closed;

    WeightPortFlood(IPEndPoint target, int connections, int firstAddress) =>
        _loops = [.. Enumerable.Range(0, connections).Select(i => Task.Run(() => LoopAsync(target, IPAddress.Parse($"127.0.0.{firstAddress + i % 16}"))))];

    public static WeightPortFlood Start(IPEndPoint target, int connections = 64, int firstAddress = 100) => new(target, connections, firstAddress);

    /// <summary>Connections the server has closed so far (at once for want of a place, or at the token deadline).</summary>
    public int Closed => Volatile.Read(ref _closed);

    async Task LoopAsync(IPEndPoint target, IPAddress from)
    {
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                using var client = new TcpClient(new IPEndPoint(from, 0));
                await client.ConnectAsync(target, _stop.Token);
                if (await client.GetStream().ReadAsync(new byte[8], _stop.Token) == 0) Interlocked.Increment(ref _closed);
            }
            catch (Exception e) when (e is SocketException or IOException or OperationCanceledException) { }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await Task.WhenAll(_loops);
        _stop.Dispose();
    }
}
