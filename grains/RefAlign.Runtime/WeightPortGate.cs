using System.Net;

namespace RefAlign.Runtime;

/// <summary>How the weight port admits connections (<c>Silo:WeightTokenDeadline</c>, <c>Silo:WeightSlotsPerPeer</c>).</summary>
public sealed record WeightPortOptions
{
    /// <summary>A connection that has not presented its request line (run, version, token) by then is closed.</summary>
    public TimeSpan TokenDeadline { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Transfers served at once.</summary>
    public int MaxTransfers { get; init; } = 16;

    /// <summary>Connections one peer address may hold at once, waiting for a token or being served.</summary>
    public int SlotsPerPeer { get; init; } = 4;

    /// <summary>Connections waiting for their token at once, from every peer; <see cref="MemberHandshakes"/> of them only for cluster members.</summary>
    public int MaxHandshakes { get; init; } = 64;

    /// <summary>Handshake places kept for the cluster's own silos: outsiders never hold them.</summary>
    public int MemberHandshakes { get; init; } = 16;

    /// <summary>How long a request with a valid token waits for a transfer place before it is closed.</summary>
    public TimeSpan TransferWait { get; init; } = TimeSpan.FromSeconds(30);
}

/// <summary>
/// Who may hold a connection of the weight port, and for how long. A new connection holds a handshake place for at most
/// <see cref="WeightPortOptions.TokenDeadline"/>, until it presents a publication's token; only a valid token earns a
/// transfer place. Places are capped per peer address, and outsiders (addresses that are not silos of the cluster) share
/// what the members' reserve leaves, so connections that never speak, or reconnect as fast as they are closed, cannot
/// starve a silo of the cluster fetching its weights.
/// </summary>
internal sealed class WeightPortGate(WeightPortOptions options, Func<IPAddress, bool> isMember)
{
    readonly Lock _gate = new();
    readonly Dictionary<IPAddress, int> _perPeer = [];
    readonly SemaphoreSlim _transfers = new(options.MaxTransfers, options.MaxTransfers);
    int _outsiderHandshakes, _memberHandshakes;

    public WeightPortOptions Options => options;

    /// <summary>Transfers being served right now.</summary>
    public int Transfers => options.MaxTransfers - _transfers.CurrentCount;

    /// <summary>Connections waiting for their token right now.</summary>
    public int Handshakes
    {
        get { lock (_gate) return _outsiderHandshakes + _memberHandshakes; }
    }

    /// <summary>A handshake place for a connection from <paramref name="peer"/>, or null (close it at once).</summary>
    public Handshake? TryAdmit(IPAddress peer)
    {
        peer = peer.IsIPv4MappedToIPv6 ? peer.MapToIPv4() : peer;
        var member = isMember(peer);
        lock (_gate)
        {
            if (_perPeer.GetValueOrDefault(peer) >= options.SlotsPerPeer) return null;
            // Members may use every place; outsiders only those the members' reserve leaves.
            var taken = _outsiderHandshakes + _memberHandshakes;
            if (member ? taken >= options.MaxHandshakes : _outsiderHandshakes >= options.MaxHandshakes - options.MemberHandshakes || taken >= options.MaxHandshakes)
                return null;
            if (member) _memberHandshakes++;
            else _outsiderHandshakes++;
            _perPeer[peer] = _perPeer.GetValueOrDefault(peer) + 1;
        }
        return new Handshake(this, peer, member);
    }

    void Release(IPAddress peer, bool member, bool handshaking)
    {
        lock (_gate)
        {
            if (handshaking)
            {
                if (member) _memberHandshakes--;
                else _outsiderHandshakes--;
            }
            if (--_perPeer[peer] == 0) _perPeer.Remove(peer);
        }
    }

    /// <summary>
    /// One admitted connection: it holds a handshake place until <see cref="TryTransferAsync"/> (a valid token) moves it to
    /// a transfer place, and its peer's place until disposed.
    /// </summary>
    internal sealed class Handshake(WeightPortGate gate, IPAddress peer, bool member) : IDisposable
    {
        bool _handshaking = true, _transferring, _disposed;

        public bool Member => member;

        /// <summary>Leaves the handshake place and waits for a transfer place; false when none came in time.</summary>
        public async Task<bool> TryTransferAsync(CancellationToken cancellation)
        {
            lock (gate._gate)
            {
                if (member) gate._memberHandshakes--;
                else gate._outsiderHandshakes--;
                _handshaking = false;
            }
            return _transferring = await gate._transfers.WaitAsync(gate.Options.TransferWait, cancellation);
        }

        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            if (_transferring) gate._transfers.Release();
            gate.Release(peer, member, _handshaking);
        }
    }
}
