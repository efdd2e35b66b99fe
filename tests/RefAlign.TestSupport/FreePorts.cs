using System.Net;
using System.Net.Sockets;

namespace RefAlign.TestSupport;

/// <summary>Distinct free loopback ports, held open together while picked so they cannot repeat.</summary>
public static class FreePorts
{
    public static int[] Take(int count)
    {
        var listeners = Enumerable.Range(0, count).Select(_ =>
        {
            var l = new TcpListener(IPAddress.Loopback, 0);
            l.Start();
            return l;
        }).ToArray();
        var ports = listeners.Select(l => ((IPEndPoint)l.LocalEndpoint).Port).ToArray();
        foreach (var l in listeners) l.Stop();
        return ports;
    }

    public static int One() => Take(1)[0];
}
