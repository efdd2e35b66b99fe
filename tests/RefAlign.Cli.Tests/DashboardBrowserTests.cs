using System.Net;
using Microsoft.Playwright;

namespace RefAlign.Cli.Tests;

/// <summary>
/// A real silo process with an operator's and a viewer's key, and Debian's headless Chromium driven by Playwright (no
/// browser download). Neither may be missing: a browser that cannot start fails the tests, it does not skip them.
/// </summary>
public sealed class DashboardFixture : IAsyncLifetime
{
    public const string OperatorKey = "dashboard-operator-key-0123";
    public const string ViewerKey = "dashboard-viewer-key-0123";
    public const string Chromium = "/usr/bin/chromium";

    public DemoWorkspace Workspace { get; } = new("refalign-dashboard-browser-");

    public SiloProcess Silo { get; private set; } = null!;

    public IPlaywright Playwright { get; private set; } = null!;

    public IBrowser Browser { get; private set; } = null!;

    public string Url => $"http://127.0.0.1:{Silo.HttpPort}/";

    public async Task InitializeAsync()
    {
        Silo = await SiloProcess.StartAsync("dash-browser-silo", Workspace.Root,
            [$"--Silo:ApiKey={OperatorKey}", $"--Silo:ApiKeys:0:Key={ViewerKey}", "--Silo:ApiKeys:0:Role=viewer"]);
        if (!File.Exists(Chromium))
            throw new InvalidOperationException($"{Chromium} is missing: install Debian's chromium (apt-get install chromium), as .ci/run does.");
        // Patience for a busy 2-core machine: a step of the tiny run takes a second or more there.
        Assertions.SetDefaultExpectTimeout(60_000);
        Playwright = await Microsoft.Playwright.Playwright.CreateAsync();
        Browser = await Playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = Chromium,
            Headless = true,
            Args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"],
        });
    }

    public async Task DisposeAsync()
    {
        if (Browser is not null) await Browser.CloseAsync();
        Playwright?.Dispose();
        if (Silo is not null) await Silo.DisposeAsync();
        Workspace.Dispose();
    }
}

/// <summary>The run dashboard (<c>/</c> on the silo's HTTP port) in a real browser, during a real run.</summary>
[Trait("Tier", "Process")]
public sealed class DashboardBrowserTests(DashboardFixture fixture) : IClassFixture<DashboardFixture>
{
    static readonly float Patience = (float)TimeSpan.FromMinutes(2).TotalMilliseconds;

    async Task<IPage> NewPageAsync()
    {
        var context = await fixture.Browser.NewContextAsync(new BrowserNewContextOptions { ViewportSize = new ViewportSize { Width = 1400, Height = 1300 } });
        var page = await context.NewPageAsync();
        page.SetDefaultTimeout(Patience);
        return page;
    }

    static async Task SignInAsync(IPage page, string key)
    {
        await page.FillAsync("#key", key);
        await page.ClickAsync("#sign-in-form button[type=submit]");
    }

    async Task<string> StartRunAsync(int steps)
    {
        // Eval every 3 steps on a held-out quarter: eval points on the reward chart.
        var json = TinyRuns.RefAlign("dash-run", steps, checkpointEvery: 100)
            .Replace("\"eval_every\": 0", "\"eval_every\": 3", StringComparison.Ordinal)
            .Replace("\"limit\": 24", "\"limit\": 24, \"eval_fraction\": 0.25", StringComparison.Ordinal);
        var start = await CliRunner.RunAsync("run", "start", "--config", TinyRuns.Write(fixture.Workspace.Root, json), "--json",
            "--silo", fixture.Silo.GrpcAddress, "--api-key", DashboardFixture.OperatorKey);
        Assert.True(start.ExitCode == 0, start.Stderr);
        return start.Json["run_id"]!.GetValue<string>();
    }

    static async Task<int> IntAttributeAsync(IPage page, string selector, string attribute) =>
        int.Parse(await page.GetAttributeAsync(selector, attribute) ?? "0", System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public async Task A_missing_or_wrong_key_shows_the_sign_in_and_a_viewers_key_opens_the_dashboard()
    {
        var page = await NewPageAsync();
        await page.GotoAsync(fixture.Url);
        await Assertions.Expect(page.Locator("#sign-in")).ToBeVisibleAsync(new() { Timeout = Patience });
        await Assertions.Expect(page.Locator("#sign-in-message")).ToContainTextAsync("requires an API key");
        await Assertions.Expect(page.Locator("#app")).ToBeHiddenAsync();

        await SignInAsync(page, "not-the-key-at-all-0000");
        await Assertions.Expect(page.Locator("#sign-in-message")).ToContainTextAsync("not valid", new() { Timeout = Patience });
        await Assertions.Expect(page.Locator("#app")).ToBeHiddenAsync();

        await SignInAsync(page, DashboardFixture.ViewerKey);
        await Assertions.Expect(page.Locator("#app")).ToBeVisibleAsync(new() { Timeout = Patience });
        await Assertions.Expect(page.Locator("#sign-in")).ToBeHiddenAsync();
        // The cluster view: this silo, its roles and device.
        await Assertions.Expect(page.Locator("#silos tbody")).ToContainTextAsync("dash-browser-silo", new() { Timeout = Patience });
        await Assertions.Expect(page.Locator("#silos tbody")).ToContainTextAsync("learner");
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task A_silo_without_keys_opens_the_dashboard_without_asking()
    {
        await using var open = await SiloProcess.StartAsync("dash-open-silo", fixture.Workspace.Root);
        var page = await NewPageAsync();
        await page.GotoAsync($"http://127.0.0.1:{open.HttpPort}/");
        await Assertions.Expect(page.Locator("#app")).ToBeVisibleAsync();
        await Assertions.Expect(page.Locator("#sign-in")).ToBeHiddenAsync();
        await Assertions.Expect(page.Locator("#no-runs")).ToBeVisibleAsync();
        await Assertions.Expect(page.Locator("#silos tbody")).ToContainTextAsync("dash-open-silo");
        await page.Context.CloseAsync();
    }

    /// <summary>Long enough (a second or so a step here) to see the run live, and the cluster view catch its workers.</summary>
    const int Steps = 24;

    /// <summary>
    /// Saved beside the test's assembly (artifacts/dashboard.png); copied to the README's picture only on request
    /// (REFALIGN_UPDATE_SCREENSHOTS=1), so a test run never changes the working tree.
    /// </summary>
    static async Task ScreenshotAsync(IPage page)
    {
        var screenshot = Path.Combine(AppContext.BaseDirectory, "artifacts", "dashboard.png");
        Directory.CreateDirectory(Path.GetDirectoryName(screenshot)!);
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = screenshot, FullPage = true });
        Assert.True(new FileInfo(screenshot).Length > 10_000, "the screenshot is (nearly) empty");
        if (Environment.GetEnvironmentVariable("REFALIGN_UPDATE_SCREENSHOTS") == "1")
            File.Copy(screenshot, Path.Combine(BuiltTools.RepositoryRoot, "docs", "images", "dashboard.png"), overwrite: true);
    }

    [Fact]
    public async Task A_running_run_appears_and_its_step_counter_and_charts_grow_live()
    {
        var id = await StartRunAsync(Steps);
        var page = await NewPageAsync();
        await page.GotoAsync(fixture.Url);
        await SignInAsync(page, DashboardFixture.ViewerKey);
        await Assertions.Expect(page.Locator($"#runs tbody tr[data-run-id='{id}']")).ToBeVisibleAsync(new() { Timeout = Patience });
        await page.ClickAsync($"#runs tbody tr[data-run-id='{id}']");
        await Assertions.Expect(page.Locator("#run-title")).ToHaveTextAsync(id);

        // Live, without reloading: the counter and the reward chart's points grow as steps arrive over the event stream.
        const string reward = "figure[data-chart='reward/mean']";
        await page.WaitForFunctionAsync($"() => Number(document.querySelector(\"{reward}\")?.dataset.points ?? 0) >= 2");
        var (step, points) = (await IntAttributeAsync(page, "#run-step", "data-step"), await IntAttributeAsync(page, reward, "data-points"));
        Assert.True(step >= 2, $"step {step}");
        await page.WaitForFunctionAsync(
            $"() => Number(document.querySelector('#run-step').dataset.step) > {step} && Number(document.querySelector(\"{reward}\").dataset.points) > {points}");

        // The other charts, the log and the cluster view fill while the run goes on: its generator shards, their silo and
        // weight version.
        await Assertions.Expect(page.Locator("figure[data-chart='tokens_per_second']")).ToBeVisibleAsync();
        await Assertions.Expect(page.Locator("figure[data-chart='phases']")).ToContainTextAsync("generate");
        await Assertions.Expect(page.Locator("#placements tbody")).ToContainTextAsync("generator");
        await Assertions.Expect(page.Locator("#placements tbody")).ToContainTextAsync("dash-browser-silo");
        await page.WaitForFunctionAsync("() => Number(document.querySelector('#run-step').dataset.step) >= 10");
        await ScreenshotAsync(page);

        // The whole run arrives in the end.
        await page.WaitForFunctionAsync($"() => document.querySelector('#run-step').dataset.step === '{Steps}' && document.querySelector('#run-status').textContent === 'completed'");
        Assert.Equal(Steps, await IntAttributeAsync(page, reward, "data-points"));
        await Assertions.Expect(page.Locator("#events")).ToContainTextAsync("eval/reward/mean");
        await Assertions.Expect(page.Locator($"#runs tbody tr[data-run-id='{id}']")).ToContainTextAsync($"{Steps}/{Steps}");
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task The_api_takes_the_control_apis_keys_and_streams_a_runs_events_to_its_end()
    {
        var id = await StartRunAsync(steps: 3);
        using var http = new HttpClient { BaseAddress = new Uri(fixture.Url), Timeout = TimeSpan.FromMinutes(3) };
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync("api/runs")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync($"api/runs/{id}/events?key=wrong-key-000000000")).StatusCode);
        // Probes and the scraper need no key.
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("healthz")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("metrics")).StatusCode);

        using var get = new HttpRequestMessage(HttpMethod.Get, $"api/runs/{id}");
        get.Headers.Add("x-api-key", DashboardFixture.ViewerKey);
        using var run = await http.SendAsync(get);
        Assert.Equal(HttpStatusCode.OK, run.StatusCode);
        Assert.Contains($"\"run_id\":\"{id}\"", await run.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        using var unknown = new HttpRequestMessage(HttpMethod.Get, "api/runs/no-such-run");
        unknown.Headers.Add("x-api-key", DashboardFixture.OperatorKey);
        Assert.Equal(HttpStatusCode.NotFound, (await http.SendAsync(unknown)).StatusCode);

        // EventSource's way: the key in the query; every step in order, then "end" once the run has completed.
        using var stream = await http.GetAsync($"api/runs/{id}/events?key={DashboardFixture.ViewerKey}", HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal("text/event-stream", stream.Content.Headers.ContentType?.MediaType);
        var text = await stream.Content.ReadAsStringAsync();
        Assert.EndsWith("event: end\ndata: {}\n\n", text, StringComparison.Ordinal);
        var steps = text.Split("\n\n").Where(e => e.Contains("\"kind\":\"step\"", StringComparison.Ordinal)).ToList();
        Assert.Equal(3, steps.Count);
        Assert.Contains("\"step\":3", steps[^1], StringComparison.Ordinal);

        // A reconnecting EventSource sends the last id it saw and gets only what followed.
        var lastId = text.Split('\n').Last(l => l.StartsWith("id: ", StringComparison.Ordinal))[4..];
        using var resume = new HttpRequestMessage(HttpMethod.Get, $"api/runs/{id}/events?key={DashboardFixture.ViewerKey}");
        resume.Headers.Add("Last-Event-ID", lastId);
        using var rest = await http.SendAsync(resume);
        Assert.DoesNotContain("event: run", await rest.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }
}
