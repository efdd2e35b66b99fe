using System.Net;

namespace RefAlign.Silo.Tests;

/// <summary>The Orleans Dashboard behind <c>Silo:Dashboard:Enabled</c>, on its own port, in a real silo process.</summary>
[Trait("Tier", "Process")]
public sealed class DashboardTests
{
    [Fact]
    public async Task The_dashboard_is_served_on_its_own_port_only_when_enabled()
    {
        using var workspace = new DemoWorkspace("refalign-dashboard-");
        var port = FreePorts.One();
        await using (var silo = await SiloProcess.StartAsync("dash-silo", workspace.Root, ["--Silo:Dashboard:Enabled=true", $"--Silo:Dashboard:Port={port}"]))
        {
            using var http = new HttpClient();
            using var page = await http.GetAsync($"http://127.0.0.1:{port}/");
            Assert.Equal(HttpStatusCode.OK, page.StatusCode);
            Assert.Equal("text/html", page.Content.Headers.ContentType?.MediaType);
            Assert.Contains("Orleans", await page.Content.ReadAsStringAsync(), StringComparison.OrdinalIgnoreCase);
            // The silo's own ports keep their own root page.
            Assert.StartsWith("RefAlign silo 'dash-silo'", await http.GetStringAsync($"http://127.0.0.1:{silo.HttpPort}/"));
        }
        // Off by default: nothing listens on the dashboard port.
        await using var plain = await SiloProcess.StartAsync("plain-silo", workspace.Root);
        using var client = new HttpClient();
        await Assert.ThrowsAsync<HttpRequestException>(() => client.GetAsync($"http://127.0.0.1:{port}/"));
    }
}
