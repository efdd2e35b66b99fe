using Microsoft.Extensions.Options;
using RefAlign.Grains;
using RefAlign.Runtime;

namespace RefAlign.Silo.Hosting;

/// <summary>Set once the host starts stopping; health reports "draining" so balancers stop sending work.</summary>
public sealed class ShutdownState
{
    private volatile bool _draining;

    public bool Draining => _draining;

    internal void BeginDraining() => _draining = true;
}

/// <summary>
/// The drain on SIGTERM: grains here stop taking new work (callers retry on other silos), the learners here checkpoint at
/// once into the shared checkpoint root (their runs resume from there on another learner silo, nothing replayed), and
/// running compute work gets up to <see cref="SiloOptions.ShutdownGracePeriod"/> to finish before the Orleans silo
/// stops. Registered after <c>UseOrleans</c>, so the host stops it first (hosted services stop in reverse order).
/// </summary>
internal sealed class GracefulShutdown(
    IHostApplicationLifetime lifetime,
    ShutdownState state,
    ComputeExecutor executor,
    LocalLearners learners,
    IOptions<SiloOptions> options,
    ILogger<GracefulShutdown> logger) : IHostedService
{
    private CancellationTokenRegistration _stopping;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _stopping = lifetime.ApplicationStopping.Register(state.BeginDraining);
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        state.BeginDraining();
        await _stopping.DisposeAsync();
        var grace = options.Value.ShutdownGracePeriod;
        using (var drainBudget = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
        {
            drainBudget.CancelAfter(grace);
            if (learners.RunIds.Count > 0) logger.LogWarning("Shutdown: checkpointing {Count} learner(s) before leaving.", learners.RunIds.Count);
            await learners.DrainAsync(drainBudget.Token);
        }

        var busy = executor.QueueLength + executor.Running;
        if (busy == 0)
        {
            return;
        }

        logger.LogInformation("Shutdown: waiting up to {Grace} for {Busy} compute item(s) to finish.", grace, busy);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(grace);
        try
        {
            await executor.WhenIdleAsync(timeout.Token);
            logger.LogInformation("Shutdown: compute work finished.");
        }
        catch (OperationCanceledException)
        {
            logger.LogWarning(
                "Shutdown: {Busy} compute item(s) still running after {Grace}; stopping the silo anyway (grains hand over on reactivation).",
                executor.QueueLength + executor.Running, grace);
        }
    }
}
