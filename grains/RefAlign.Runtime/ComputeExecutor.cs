using System.Collections.Concurrent;

namespace RefAlign.Runtime;

/// <summary>
/// Runs tensor work on a fixed set of dedicated threads bound to one device, so grains await it instead of doing it on
/// the Orleans scheduler. Each work item runs synchronously on one thread from start to end, which is what TorchSharp's
/// thread-static dispose scopes need.
/// </summary>
/// <remarks>
/// Continuations of the returned tasks never run on a compute thread.
/// </remarks>
public sealed class ComputeExecutor : IDisposable
{
    [ThreadStatic] private static ComputeExecutor? t_owner;

    private readonly BlockingCollection<WorkItem> _queue = new(new ConcurrentQueue<WorkItem>());
    private readonly Thread[] _threads;
    private readonly Lock _idleLock = new();
    private TaskCompletionSource _idle = NewIdleSource(completed: true);
    private int _outstanding;
    private int _running;
    private long _completed;
    private int _disposed;

    public ComputeExecutor(string device, int threadCount, string name = "compute")
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(device);
        ArgumentOutOfRangeException.ThrowIfLessThan(threadCount, 1);
        Device = device;
        Name = name;
        _threads = new Thread[threadCount];
        for (var i = 0; i < threadCount; i++)
        {
            _threads[i] = new Thread(Loop) { IsBackground = true, Name = $"{name} {device} #{i}" };
            _threads[i].Start();
        }
    }

    /// <summary>The device this executor's threads drive, e.g. <c>cpu</c> or <c>cuda:0</c>.</summary>
    public string Device { get; }

    /// <summary>
    /// <see cref="Device"/> as the tensor device every model, batch and optimizer state of this silo lives on: the one
    /// place a grain's tensors get their device. Checked against the loaded libtorch on first use.
    /// </summary>
    public TorchSharp.torch.Device TensorDevice => _tensorDevice ??= Compute.ComputeDevices.Resolve(Device, "Silo:Device");

    private TorchSharp.torch.Device? _tensorDevice;

    public string Name { get; }

    public int ThreadCount => _threads.Length;

    /// <summary>Managed thread ids of the dedicated threads.</summary>
    public IReadOnlyList<int> ThreadIds => _threads.Select(t => t.ManagedThreadId).ToArray();

    /// <summary>Work items waiting for a thread.</summary>
    public int QueueLength => _queue.Count;

    /// <summary>Work items running right now.</summary>
    public int Running => Volatile.Read(ref _running);

    public long Completed => Interlocked.Read(ref _completed);

    /// <summary>True on one of this executor's threads.</summary>
    public bool IsOnComputeThread => ReferenceEquals(t_owner, this);

    /// <summary>The executor whose thread is running the caller, or null.</summary>
    public static ComputeExecutor? Current => t_owner;

    public Task<T> RunAsync<T>(Func<T> work, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(work);
        return RunAsync(_ => work(), cancellation);
    }

    /// <summary>Queues <paramref name="work"/>; the token cancels it while queued and is handed to it while running.</summary>
    public Task<T> RunAsync<T>(Func<CancellationToken, T> work, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(work);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (cancellation.IsCancellationRequested)
        {
            return Task.FromCanceled<T>(cancellation);
        }

        var item = new WorkItem<T>(work, cancellation);
        lock (_idleLock)
        {
            if (_outstanding++ == 0)
            {
                _idle = NewIdleSource(completed: false);
            }
        }

        try
        {
            _queue.Add(item);
        }
        catch (InvalidOperationException)
        {
            // Disposed between the check and the add.
            Finished();
            throw new ObjectDisposedException(nameof(ComputeExecutor));
        }

        return item.Task;
    }

    public Task RunAsync(Action work, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(work);
        return RunAsync(_ =>
        {
            work();
            return true;
        }, cancellation);
    }

    /// <summary>Completes when nothing is queued or running (used by graceful shutdown).</summary>
    public Task WhenIdleAsync(CancellationToken cancellation = default)
    {
        lock (_idleLock)
        {
            return _idle.Task.WaitAsync(cancellation);
        }
    }

    /// <summary>Stops accepting work, cancels what is still queued and waits briefly for running items.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _queue.CompleteAdding();
        foreach (var thread in _threads)
        {
            if (thread != Thread.CurrentThread)
            {
                thread.Join(TimeSpan.FromSeconds(5));
            }
        }
    }

    private void Loop()
    {
        t_owner = this;
        foreach (var item in _queue.GetConsumingEnumerable())
        {
            if (Volatile.Read(ref _disposed) != 0)
            {
                item.Cancel();
                Finished();
                continue;
            }

            Interlocked.Increment(ref _running);
            try
            {
                item.Execute();
            }
            finally
            {
                Interlocked.Decrement(ref _running);
                Interlocked.Increment(ref _completed);
                Finished();
            }
        }
    }

    private void Finished()
    {
        lock (_idleLock)
        {
            if (--_outstanding == 0)
            {
                _idle.TrySetResult();
            }
        }
    }

    private static TaskCompletionSource NewIdleSource(bool completed)
    {
        var source = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        if (completed)
        {
            source.SetResult();
        }

        return source;
    }

    private abstract class WorkItem
    {
        public abstract void Execute();

        public abstract void Cancel();
    }

    private sealed class WorkItem<T> : WorkItem
    {
        private readonly Func<CancellationToken, T> _work;
        private readonly CancellationToken _cancellation;
        private readonly TaskCompletionSource<T> _source = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly CancellationTokenRegistration _registration;
        private int _started;

        public WorkItem(Func<CancellationToken, T> work, CancellationToken cancellation)
        {
            _work = work;
            _cancellation = cancellation;
            // Cancelling while queued completes the task at once; the thread skips the item later.
            _registration = cancellation.CanBeCanceled
                ? cancellation.Register(static s => ((WorkItem<T>)s!).TryCancelQueued(), this)
                : default;
        }

        public Task<T> Task => _source.Task;

        public override void Execute()
        {
            _registration.Dispose();
            if (Interlocked.Exchange(ref _started, 1) != 0 || _source.Task.IsCompleted)
            {
                return;
            }

            try
            {
                _source.TrySetResult(_work(_cancellation));
            }
            catch (OperationCanceledException e) when (e.CancellationToken == _cancellation)
            {
                _source.TrySetCanceled(_cancellation);
            }
            catch (Exception e)
            {
                _source.TrySetException(e);
            }
        }

        public override void Cancel()
        {
            _registration.Dispose();
            _source.TrySetCanceled();
        }

        private void TryCancelQueued()
        {
            if (Interlocked.CompareExchange(ref _started, 1, 0) == 0)
            {
                _source.TrySetCanceled(_cancellation);
            }
        }
    }
}
