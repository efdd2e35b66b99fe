using System.Security.Cryptography.X509Certificates;

namespace RefAlign.Silo.Hosting;

/// <summary>Which certificates a silo accepts from the other silos of its cluster.</summary>
public static class PeerCertificates
{
    /// <summary>
    /// <paramref name="remote"/> is trusted when it is this silo's own certificate (all silos share one), or, with a CA
    /// given, when it chains to that CA alone.
    /// </summary>
    public static bool Trusted(X509Certificate2? remote, X509Certificate2 own, X509Certificate2? ca)
    {
        if (remote is null) return false;
        if (ca is null) return remote.RawDataMemory.Span.SequenceEqual(own.RawDataMemory.Span);
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(ca);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        return chain.Build(remote);
    }
}
