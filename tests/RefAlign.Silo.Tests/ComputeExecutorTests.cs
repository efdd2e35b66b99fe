using RefAlign.Runtime;

namespace RefAlign.Silo.Tests;

public sealed class ComputeExecutorTests
{
    [Fact]
    public async Task Work_runs_on_the_dedicated_threads_not_the_caller()
    {
        using var executor = new ComputeExecutor("cpu", 2, "test-compute");
        var caller = Environment.CurrentManagedThreadId;
        var seen = await Task.WhenAll(Enumerable.Range(0, 16).Select(_ => executor.RunAsync(() =>
            (Id: Environment.CurrentManagedThreadId, Name: Thread.CurrentThread.Name, Mine: executor.IsOnComputeThread,
                Pool: Thread.CurrentThread.IsThreadPoolThread))));

        Assert.All(seen, s =>
        {
            Assert.Contains(s.Id, executor.ThreadIds);
            Assert.NotEqual(caller, s.Id);
            Assert.StartsWith("test-compute cpu #", s.Name);
            Assert.True(s.Mine);
            Assert.False(s.Pool);
        });
        Assert.False(executor.IsOnComputeThread);
        Assert.Equal(16, executor.Completed);
    }

    [Fact]
    public async Task At_most_thread_count_items_run_at_once()
    {
        using var executor = new ComputeExecutor("cpu", 2);
        var running = 0;
        var peak = 0;
        await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => executor.RunAsync(() =>
        {
            var now = Interlocked.Increment(ref running);
            InterlockedMax(ref peak, now);
            Thread.Sleep(20);
            Interlocked.Decrement(ref running);
        })));
        Assert.Equal(2, peak);
    }

    [Fact]
    public async Task Errors_propagate_and_queued_work_can_be_cancelled()
    {
        using var executor = new ComputeExecutor("cpu", 1);
        await Assert.ThrowsAsync<InvalidOperationException>(() => executor.RunAsync<int>(() => throw new InvalidOperationException("boom")));

        using var gate = new ManualResetEventSlim();
        var blocker = executor.RunAsync(() => gate.Wait(TimeSpan.FromSeconds(10)));
        using var cts = new CancellationTokenSource();
        var ran = false;
        var queued = executor.RunAsync(() => ran = true, cts.Token);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => queued);
        var idle = executor.WhenIdleAsync();
        Assert.False(idle.IsCompleted);
        gate.Set();
        await blocker;
        await idle.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.False(ran);
    }

    private static void InterlockedMax(ref int target, int value)
    {
        var current = Volatile.Read(ref target);
        while (value > current && Interlocked.CompareExchange(ref target, value, current) is var seen && seen != current)
        {
            current = seen;
        }
    }
}
