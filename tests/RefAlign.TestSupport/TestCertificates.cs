using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace RefAlign.TestSupport;

/// <summary>
/// A throwaway CA and a certificate it issued for 127.0.0.1 / localhost (server and client authentication), written as
/// PEM files the way an operator would mount them: <c>ca.pem</c>, <c>silo.pem</c>, <c>silo.key</c>.
/// </summary>
public sealed class TestCertificates
{
    public string CaPath { get; }
    public string CertificatePath { get; }
    public string KeyPath { get; }

    public TestCertificates(string folder, string name = "silo")
    {
        Directory.CreateDirectory(folder);
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caRequest = new CertificateRequest($"CN=RefAlign test CA {name}", caKey, HashAlgorithmName.SHA256);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        using var ca = caRequest.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));

        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(IPAddress.Loopback);
        san.AddDnsName("localhost");
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
            [new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], false)); // server and client authentication
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, false));
        using var certificate = request.Create(ca, DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(29), RandomNumberGenerator.GetBytes(8));

        CaPath = Path.Combine(folder, $"{name}-ca.pem");
        CertificatePath = Path.Combine(folder, $"{name}.pem");
        KeyPath = Path.Combine(folder, $"{name}.key");
        File.WriteAllText(CaPath, ca.ExportCertificatePem());
        File.WriteAllText(CertificatePath, certificate.ExportCertificatePem());
        File.WriteAllText(KeyPath, key.ExportPkcs8PrivateKeyPem());
    }

    /// <summary>The silo settings that use these files.</summary>
    public string[] SiloArgs => [$"--Silo:Tls:CertificatePath={CertificatePath}", $"--Silo:Tls:KeyPath={KeyPath}"];
}
