using System.Net;
using System.Security.Cryptography.X509Certificates;

namespace RefAlign.Silo.Hosting;

/// <summary>What an API key may do: <see cref="Viewer"/> reads (get, list, watch, cluster), <see cref="Operator"/> everything.</summary>
public enum ApiRole { Viewer, Operator }

/// <summary>One accepted API key and its role.</summary>
public sealed record ApiKey(string Key, ApiRole Role);

/// <summary>
/// Who may reach the silo and how (keys under <c>Silo:</c>): the control API's listen address, its API keys with roles
/// (<c>Silo:ApiKeys:N:Key</c> or <c>:KeyFile</c>, and <c>:Role</c>; <c>Silo:ApiKey</c> is one operator key), TLS from a
/// PEM certificate and key (<c>Silo:Tls:CertificatePath</c>, <c>Silo:Tls:KeyPath</c>; also silo-to-silo and gateway
/// connections, mutually authenticated), and <c>Silo:AllowAnonymous</c>, without which a silo that listens beyond
/// loopback with no key refuses to start.
/// </summary>
public sealed record SecuritySettings
{
    public IPAddress ListenIP { get; init; } = IPAddress.Loopback;

    public IReadOnlyList<ApiKey> ApiKeys { get; init; } = [];

    public bool AllowAnonymous { get; init; }

    public string? CertificatePath { get; init; }

    public string? KeyPath { get; init; }

    /// <summary>CA that issued the peers' certificates (silo-to-silo TLS); without it, peers must present this very certificate.</summary>
    public string? CaPath { get; init; }

    public bool Tls => CertificatePath is not null;

    /// <summary>The certificate (with its private key) from the PEM files.</summary>
    public X509Certificate2 LoadCertificate()
    {
        // Re-imported: Kestrel and SslStream on Linux want a certificate whose key is not an ephemeral PEM import.
        using var pem = X509Certificate2.CreateFromPemFile(CertificatePath!, KeyPath);
        return X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
    }

    public static SecuritySettings Read(IConfiguration configuration)
    {
        var silo = configuration.GetSection(SiloOptions.Section);
        var keys = new List<ApiKey>();
        if (Blank(silo["ApiKey"]) is { } single) keys.Add(new ApiKey(single, ApiRole.Operator));
        foreach (var entry in silo.GetSection("ApiKeys").GetChildren())
        {
            var path = $"Silo:ApiKeys:{entry.Key}";
            var role = Blank(entry["Role"]) switch
            {
                null or "operator" => ApiRole.Operator,
                "viewer" => ApiRole.Viewer,
                var other => throw new SiloConfigurationException($"{path}:Role", $"'{other}' is not viewer or operator."),
            };
            string? key = Blank(entry["Key"]);
            if (Blank(entry["KeyFile"]) is { } file)
            {
                try { key = File.ReadAllText(file).Trim(); }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    throw new SiloConfigurationException($"{path}:KeyFile", $"'{file}' cannot be read ({e.Message}).");
                }
            }
            if (key is null) throw new SiloConfigurationException($"{path}:Key", "needs Key or KeyFile.");
            if (key.Length < 16) throw new SiloConfigurationException($"{path}:Key", "is shorter than 16 characters.");
            keys.Add(new ApiKey(key, role));
        }

        var listen = Blank(silo["ListenIP"]) is { } ip
            ? IPAddress.TryParse(ip, out var address) ? address : throw new SiloConfigurationException("Silo:ListenIP", $"'{ip}' is not an IP address.")
            : IPAddress.Loopback;
        var anonymous = Blank(silo["AllowAnonymous"]) is { } a
            ? bool.TryParse(a, out var on) ? on : throw new SiloConfigurationException("Silo:AllowAnonymous", $"'{a}' is not true or false.")
            : false;
        var tls = silo.GetSection("Tls");
        var cert = Blank(tls["CertificatePath"]);
        var key2 = Blank(tls["KeyPath"]);
        if (cert is not null && !File.Exists(cert)) throw new SiloConfigurationException("Silo:Tls:CertificatePath", $"'{cert}' does not exist.");
        if (key2 is not null && !File.Exists(key2)) throw new SiloConfigurationException("Silo:Tls:KeyPath", $"'{key2}' does not exist.");
        if (key2 is not null && cert is null) throw new SiloConfigurationException("Silo:Tls:CertificatePath", "is required with Silo:Tls:KeyPath.");
        var ca = Blank(tls["CaPath"]);
        if (ca is not null && !File.Exists(ca)) throw new SiloConfigurationException("Silo:Tls:CaPath", $"'{ca}' does not exist.");

        var settings = new SecuritySettings { ListenIP = listen, ApiKeys = keys, AllowAnonymous = anonymous, CertificatePath = cert, KeyPath = key2, CaPath = ca };
        if (settings.Tls)
        {
            try { using var _ = settings.LoadCertificate(); }
            catch (Exception e) when (e is System.Security.Cryptography.CryptographicException or ArgumentException)
            {
                throw new SiloConfigurationException("Silo:Tls:CertificatePath", $"'{cert}' with key '{key2 ?? cert}' is not a usable PEM certificate ({e.Message}).");
            }
        }
        if (!IPAddress.IsLoopback(listen) && keys.Count == 0 && !anonymous)
            throw new SiloConfigurationException("Silo:ApiKeys",
                $"the control API would listen on {listen} (beyond loopback) with no API key; configure Silo:ApiKeys (or Silo:ApiKey), or set Silo:AllowAnonymous=true to accept anyone.");
        return settings;
    }

    static string? Blank(string? value) => string.IsNullOrWhiteSpace(value) ? null : value.Trim();
}
