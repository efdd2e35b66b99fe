using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using RefAlign.Grains;
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

    private static (GracefulShutdown Service, ShutdownState State, Lifetime Lifetime) Create(ComputeExecutor executor, TimeSpan grace, SiloDrain? drain = null)
    {
        var state = new ShutdownState();
        var lifetime = new Lifetime();
        var options = Options.Create(new SiloOptions { ShutdownGracePeriod = grace });
        // No learner lives here, so the grain factory is never asked for one.
        var learners = new LocalLearners(null!, drain ?? new SiloDrain(), NullLogger<LocalLearners>.Instance);
        return (new GracefulShutdown(lifetime, state, executor, learners, options, NullLogger<GracefulShutdown>.Instance), state, lifetime);
    }

    [Fact]
    public async Task Stop_waits_for_running_compute_work_within_the_grace_period()
    {
        using var executor = new ComputeExecutor("cpu", 1);
        var drain = new SiloDrain();
        var (service, state, lifetime) = Create(executor, TimeSpan.FromSeconds(10), drain);
        await service.StartAsync(CancellationToken.None);
        var step = executor.RunAsync(() => Thread.Sleep(300));

        lifetime.StopApplication();
        Assert.True(state.Draining);
        await service.StopAsync(CancellationToken.None);
        Assert.True(step.IsCompletedSuccessfully);
        // The grains here refuse new work from then on; callers retry on the silos that stay.
        Assert.True(drain.IsDraining);
        Assert.Throws<SiloDrainingException>(() => drain.ThrowIfDraining("a generator"));
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
