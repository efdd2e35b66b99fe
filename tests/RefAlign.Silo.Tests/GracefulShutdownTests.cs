using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using RefAlign.Runtime;
using RefAlign.Silo.Hosting;

namespace RefAlign.Silo.Tests;

public sealed class GracefulShutdownTests
{
    private sealed class Lifetime : IHostApplicationLifetime
    {
        public CancellationTokenSource Stopping { get; } = new();
        public CancellationToken ApplicationStarted => CancellationToken.None;
        public CancellationToken ApplicationStopping => Stopping.Token;
        public CancellationToken ApplicationStopped => CancellationToken.None;
        public void StopApplication() => Stopping.Cancel();
    }

    private static (GracefulShutdown Service, ShutdownState State, Lifetime Lifetime) Create(ComputeExecutor executor, TimeSpan grace)
    {
        var state = new ShutdownState();
        var lifetime = new Lifetime();
        var options = Options.Create(new SiloOptions { ShutdownGracePeriod = grace });
        return (new GracefulShutdown(lifetime, state, executor, options, NullLogger<GracefulShutdown>.Instance), state, lifetime);
    }

    [Fact]
    public async Task Stop_waits_for_running_compute_work_within_the_grace_period()
    {
        using var executor = new ComputeExecutor("cpu", 1);
        var (service, state, lifetime) = Create(executor, TimeSpan.FromSeconds(10));
        await service.StartAsync(CancellationToken.None);
        var step = executor.RunAsync(() => Thread.Sleep(300));

        lifetime.StopApplication();
        Assert.True(state.Draining);
        await service.StopAsync(CancellationToken.None);
        Assert.True(step.IsCompletedSuccessfully);
    }

    [Fact]
    public async Task Stop_gives_up_after_the_grace_period()
    {
        using var executor = new ComputeExecutor("cpu", 1);
        using var gate = new ManualResetEventSlim();
        var (service, _, _) = Create(executor, TimeSpan.FromMilliseconds(200));
        await service.StartAsync(CancellationToken.None);
        var step = executor.RunAsync(() => gate.Wait(TimeSpan.FromSeconds(10)));

        var stop = service.StopAsync(CancellationToken.None);
        await stop.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.False(step.IsCompleted);
        gate.Set();
        await step;
    }
}
