using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;
using RefAlign.Compute.Formats;

namespace RefAlign.Runtime;

/// <summary>
/// The silo's published weight snapshots, streamed to generators on other silos over a plain TCP connection: Orleans
/// messages (and HTTP) copy a payload in small segments, one socket stream moves it at close to raw TCP speed. Each
/// publication has a random 128-bit token that is part of its address (handed out only in the learner's manifest,
/// compared in constant time), so only holders of the manifest can fetch it; the manifest also carries the weights'
/// digest (<see cref="WeightDigest"/>), which the receiver checks before using a byte.
/// </summary>
/// <remarks>
/// Protocol: the client sends one line <c>runId version token\n</c> (at most <see cref="MaxRequestBytes"/> bytes, within
/// <see cref="WeightPortOptions.TokenDeadline"/>); the server answers an 8-byte little-endian length (−1 when the
/// publication is gone or the token is wrong) and the bytes. Who may hold a connection and for how long is the
/// <see cref="WeightPortGate"/>'s to say: a connection holds a place only until its deadline unless it presents a valid
/// token, places are capped per peer address, and the cluster's own silos keep places outsiders cannot take. Every write
/// has a deadline, so a client that stops reading frees its place. A relayed publication
/// (<see cref="BeginRelay"/>) is served while it arrives: a reader gets each byte once it is in, and is cut if the
/// relay's own upstream fails; it has its own token, handed out only by the learner's relay chain.
/// </remarks>
public sealed class WeightExchange(string? advertisedHost = null, WeightPortOptions? portOptions = null)
{
    const int SliceBytes = 8 << 20;
    const int ProgressBytes = 1 << 20;
    // Socket buffer sizes are left to the kernel: setting one turns Linux's autotuning off for that socket and caps it at
    // rmem_max/wmem_max (208 KB on a default host), where autotuning grows a loopback stream's window to tcp_rmem's maximum.
    public const int MaxRequestBytes = 512;
    static readonly TimeSpan SliceDeadline = TimeSpan.FromSeconds(30);
    static readonly TimeSpan ConnectDeadline = TimeSpan.FromSeconds(5);
    readonly WeightPortOptions _portOptions = portOptions ?? new WeightPortOptions();
    WeightPortGate? _gate;
    readonly ConcurrentDictionary<(string Run, long Version), WeightPublication> _published = new();
    int _port;

    /// <summary>The port the server listens on (0 until <see cref="ServeAsync"/> binds; then no address is handed out).</summary>
    public int Port => _port;

    /// <summary>The silo's spare weight buffers: a learner captures into them, a replica receives into them.</summary>
    public WeightBuffers Buffers { get; } = new();

    /// <summary>
    /// Publishes <paramref name="snapshot"/> as version <paramref name="version"/> of the run's weights (a learner keeps
    /// the versions its generators may still ask for); returns its address (null without a server). With
    /// <paramref name="recycle"/> the snapshot's buffer (rented from <see cref="Buffers"/>) goes back there once the
    /// version is retracted and no stream or replica reads it any more.
    /// </summary>
    public string? Publish(string runId, long version, WeightSnapshot snapshot, bool recycle = false)
    {
        // The registry holds the publication (its creator's hold) until it is retracted.
        var publication = WeightPublication.Whole(Guid.NewGuid().ToString("N"), snapshot, recycle ? Buffers.Return : null);
        WeightPublication? replaced = null;
        _published.AddOrUpdate((runId, version), publication, (_, old) =>
        {
            replaced = old;
            return publication;
        });
        replaced?.Release();
        return AddressOf(runId, version, publication);
    }

    /// <summary>
    /// Starts receiving version <paramref name="version"/> of a run: a publication of <paramref name="totalBytes"/> in a
    /// buffer from <see cref="Buffers"/> (it returns there after the last <see cref="WeightPublication.Release"/>; the
    /// caller holds the first), which the caller fills, advancing its <see cref="WeightPublication.Progress"/>. This server
    /// relays it onward as it fills, under a fresh token, at the returned address; the address is null when this silo
    /// already publishes the version or serves nothing (no server): the caller fetches for itself only.
    /// </summary>
    public (WeightPublication Publication, string? Address) BeginRelay(string runId, long version, long totalBytes)
    {
        var publication = new WeightPublication(Guid.NewGuid().ToString("N"), Buffers.Rent(totalBytes), null, Buffers.Return);
        if (advertisedHost is null || _port == 0 || !publication.TryHold()) return (publication, null);
        if (_published.TryAdd((runId, version), publication)) return (publication, AddressOf(runId, version, publication));
        publication.Release();
        return (publication, null);
    }

    string? AddressOf(string runId, long version, WeightPublication p) =>
        advertisedHost is null || _port == 0 ? null : $"tcp://{advertisedHost}:{_port}/{Uri.EscapeDataString(runId)}/{version}/{p.Token}";

    /// <summary>The complete snapshot published under these keys, or null (unknown, wrong token, or still arriving).</summary>
    public WeightSnapshot? Find(string runId, long version, string token) => FindPublication(runId, version, token)?.Snapshot;

    WeightPublication? FindPublication(string runId, long version, string token) =>
        _published.TryGetValue((runId, version), out var p)
        && System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(p.Token), Encoding.UTF8.GetBytes(token))
            ? p
            : null;

    /// <summary>How many whole transfers of a publication this server finished (0 when it is not published here).</summary>
    public int TimesServed(string runId, long version) => _published.TryGetValue((runId, version), out var p) ? p.TimesServed : 0;

    /// <summary>Transfers being served right now (for tests and health).</summary>
    public int ActiveConnections => _gate?.Transfers ?? 0;

    /// <summary>Connections waiting to present their token right now (for tests and health).</summary>
    public int PendingConnections => _gate?.Handshakes ?? 0;

    /// <summary>Withdraws one version of a run's weights; its address answers "gone" from then on.</summary>
    public void Retract(string runId, long version)
    {
        if (_published.TryRemove((runId, version), out var p)) p.Release();
    }

    /// <summary>Withdraws <paramref name="publication"/> if it is still the one under these keys.</summary>
    public void Retract(string runId, long version, WeightPublication publication)
    {
        if (_published.TryRemove(new KeyValuePair<(string, long), WeightPublication>((runId, version), publication))) publication.Release();
    }

    /// <summary>Withdraws every version of a run's weights.</summary>
    public void Remove(string runId)
    {
        foreach (var key in _published.Keys.Where(k => k.Run == runId).ToList()) Retract(key.Run, key.Version);
    }

    /// <summary>The snapshot behind <paramref name="address"/> when this very silo published it (no transfer needed).</summary>
    public WeightSnapshot? FindLocal(string address) => LocalPublication(address)?.Snapshot;

    /// <summary>
    /// As <see cref="FindLocal"/>, held: the caller reads its bytes and then calls <see cref="WeightPublication.Release"/>,
    /// so the buffer is not reused under it. Null when not published here (or no longer).
    /// </summary>
    public WeightPublication? HoldLocal(string address) =>
        LocalPublication(address) is { Snapshot: not null } p && p.TryHold() ? p : null;

    WeightPublication? LocalPublication(string address)
    {
        if (!Uri.TryCreate(address, UriKind.Absolute, out var uri) || uri.Port != _port) return null;
        var path = uri.AbsolutePath.Trim('/').Split('/');
        return path.Length == 3 && long.TryParse(path[1], out var v) ? FindPublication(Uri.UnescapeDataString(path[0]), v, path[2]) : null;
    }

    /// <summary>
    /// Accepts connections until cancelled; each request is served on its own task. <paramref name="isMember"/> tells the
    /// cluster's own silos by address (null: every peer counts as an outsider).
    /// </summary>
    public async Task ServeAsync(IPEndPoint bind, CancellationToken cancellation, Func<IPAddress, bool>? isMember = null)
    {
        var gate = _gate = new WeightPortGate(_portOptions, isMember ?? (_ => false));
        using var listener = new TcpListener(bind);
        listener.Start();
        _port = ((IPEndPoint)listener.LocalEndpoint).Port;
        try
        {
            while (!cancellation.IsCancellationRequested)
            {
                var client = await listener.AcceptTcpClientAsync(cancellation);
                // No place for this peer: closed at once rather than queued, so a flood costs no memory or threads.
                if ((client.Client.RemoteEndPoint as IPEndPoint)?.Address is not { } peer || gate.TryAdmit(peer) is not { } admitted)
                {
                    client.Dispose();
                    continue;
                }
                _ = Task.Run(async () =>
                {
                    using (admitted) await ServeOneAsync(client, admitted, cancellation);
                }, CancellationToken.None);
            }
        }
        catch (OperationCanceledException) when (cancellation.IsCancellationRequested) { }
        finally { _port = 0; }
    }

    async Task ServeOneAsync(TcpClient client, WeightPortGate.Handshake admitted, CancellationToken cancellation)
    {
        using (client)
        {
            WeightPublication? held = null;
            try
            {
                client.NoDelay = true;
                var stream = client.GetStream();
                var line = await ReadRequestLineAsync(stream, _portOptions.TokenDeadline, cancellation);
                if (line is null) return;
                var parts = line.Split(' ');
                var publication = parts is { Length: 3 } && long.TryParse(parts[1], out var v) ? FindPublication(Uri.UnescapeDataString(parts[0]), v, parts[2]) : null;
                // Only a valid token earns a transfer place; a wrong one is answered "gone" from the handshake place.
                if (publication is not null && !await admitted.TryTransferAsync(cancellation)) return;
                // Held while streamed: a version retracted meanwhile keeps its buffer until this reader is done.
                if (publication is not null && !publication.TryHold()) publication = null;
                held = publication;
                var header = new byte[8];
                BinaryPrimitives.WriteInt64LittleEndian(header, publication?.TotalBytes ?? -1);
                await WriteAsync(stream, header, cancellation);
                if (publication is null) return;
                publication.CountServed();
                // A relayed publication is streamed as it fills: each write sends what is in, then waits for more.
                for (long at = 0; at < publication.TotalBytes;)
                {
                    var filled = await WaitFilledAsync(publication, at, cancellation);
                    var length = (int)Math.Min(SliceBytes, Math.Min(filled, publication.TotalBytes) - at);
                    await WriteAsync(stream, publication.Data.AsMemory((int)at, length), cancellation);
                    at += length;
                }
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException) { }
            finally { held?.Release(); }
        }
    }

    /// <summary>The request line, or null when it is longer than allowed, malformed, or not complete within the deadline.</summary>
    static async Task<string?> ReadRequestLineAsync(NetworkStream stream, TimeSpan within, CancellationToken cancellation)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        deadline.CancelAfter(within);
        var buffer = new byte[MaxRequestBytes];
        var filled = 0;
        while (filled < buffer.Length)
        {
            var read = await stream.ReadAsync(buffer.AsMemory(filled), deadline.Token);
            if (read == 0) return null;
            var end = Array.IndexOf(buffer, (byte)'\n', filled, read);
            filled += read;
            if (end >= 0) return Encoding.ASCII.GetString(buffer, 0, end);
        }
        return null;
    }

    static async Task<long> WaitFilledAsync(WeightPublication publication, long at, CancellationToken cancellation)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        deadline.CancelAfter(SliceDeadline);
        return await publication.Progress.WaitBeyondAsync(at, deadline.Token);
    }

    static async Task WriteAsync(NetworkStream stream, ReadOnlyMemory<byte> bytes, CancellationToken cancellation)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        deadline.CancelAfter(SliceDeadline);
        await stream.WriteAsync(bytes, deadline.Token);
    }

    /// <summary>Fetches a publication by its address; null when it is gone or the bytes do not match the expected length.</summary>
    public static async Task<byte[]?> FetchAsync(string address, long expectedBytes, CancellationToken cancellation = default)
    {
        // Every byte is overwritten by the read, so skip zeroing the (large) buffer.
        var data = GC.AllocateUninitializedArray<byte>((int)expectedBytes);
        return await FetchIntoAsync(address, data, _ => { }, cancellation) ? data : null;
    }

    /// <summary>
    /// Receives a publication straight into <paramref name="into"/> (its length is the expected size), telling
    /// <paramref name="landed"/> how many bytes are in as they land, so a hasher or a relay can follow. False when the publication is gone or
    /// its length differs; a cut stream throws <see cref="EndOfStreamException"/>.
    /// </summary>
    public static async Task<bool> FetchIntoAsync(string address, byte[] into, Action<long> landed, CancellationToken cancellation = default)
    {
        var uri = new Uri(address);
        var path = uri.AbsolutePath.Trim('/').Split('/');
        if (uri.Scheme != "tcp" || path.Length != 3) throw new ArgumentException($"not a weight address: {address}", nameof(address));
        // A deadline for the whole transfer, generous for the size (50 MB/s at worst), so a stalled server frees the caller.
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        deadline.CancelAfter(TimeSpan.FromSeconds(30 + into.LongLength / 50e6));
        using var client = new TcpClient { NoDelay = true };
        // A relay upstream may be a silo that just died: an unanswered connect fails fast, so the caller falls back.
        using (var connect = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token))
        {
            connect.CancelAfter(ConnectDeadline);
            await client.ConnectAsync(uri.Host, uri.Port, connect.Token);
        }
        var stream = client.GetStream();
        await stream.WriteAsync(Encoding.UTF8.GetBytes($"{path[0]} {path[1]} {path[2]}\n"), deadline.Token);
        var header = new byte[8];
        await stream.ReadExactlyAsync(header, deadline.Token);
        if (BinaryPrimitives.ReadInt64LittleEndian(header) != into.LongLength) return false;
        // Progress is reported every megabyte: the hash of what is in overlaps the read of what is not, without a wake-up
        // per socket read.
        for (int at = 0, reported = 0; at < into.Length;)
        {
            var read = await stream.ReadAsync(into.AsMemory(at, Math.Min(SliceBytes, into.Length - at)), deadline.Token);
            if (read == 0) throw new EndOfStreamException($"weight stream {uri.Host}:{uri.Port} ended after {at} of {into.Length} bytes.");
            at += read;
            if (at - reported < ProgressBytes && at < into.Length) continue;
            landed(at);
            reported = at;
        }
        return true;
    }
}
