using System.Collections.Concurrent;
using RefAlign.Compute.Models;
using RefAlign.Compute.Training;

namespace RefAlign.Grains;

/// <summary>
/// In-place replicas: the learners' live policies on this silo, lent read-only to the generators of the same silo so
/// that they sample the learner's own weights, with no snapshot, hash or copy. A loan is for the version the learner
/// holds when it is taken; the learner changes its weights only while no loan is out (an update waits for the loans
/// to come back), and a generator that finds the learner mid-update or at another version samples its own replica.
/// </summary>
/// <remarks>
/// A pipelined run samples step t+1 with the weights before step t while step t changes them: there the learner lends
/// nothing (a loan would hold its step back), and its generators read the published snapshot as before.
/// </remarks>
public sealed class InPlaceReplicas
{
    readonly ConcurrentDictionary<string, Gate> _runs = new(StringComparer.Ordinal);

    /// <summary>Lends <paramref name="learner"/>'s policy to the run's generators on this silo from now on.</summary>
    public void Lend(string runId, Learner learner) => _runs[runId] = new Gate(learner);

    /// <summary>
    /// Stops lending the run's policy: waits for the loans out to come back, so that the caller may then dispose it.
    /// </summary>
    public async Task WithdrawAsync(string runId)
    {
        if (!_runs.TryRemove(runId, out var gate)) return;
        using var _ = await gate.UpdateAsync();
    }

    /// <summary>
    /// Holds off new loans and waits for the ones out before the learner changes its weights (a step, a restore, a load);
    /// dispose the result when the weights are final. Free when nothing is lent.
    /// </summary>
    public async Task<IDisposable> UpdateAsync(string runId) =>
        _runs.TryGetValue(runId, out var gate) ? await gate.UpdateAsync() : NoUpdate.Instance;

    /// <summary>
    /// A loan of the run's policy when its learner is on this silo, not mid-update, and at a version within
    /// [<paramref name="minVersion"/>, <paramref name="maxVersion"/>]; otherwise null. Dispose it when done sampling.
    /// </summary>
    public Loan? TryBorrow(string runId, long minVersion, long maxVersion) =>
        _runs.TryGetValue(runId, out var gate) ? gate.TryBorrow(minVersion, maxVersion) : null;

    /// <summary>Runs whose policy this silo lends now (for tests and health).</summary>
    public int Lending => _runs.Count;

    /// <summary>A read-only use of a learner's policy at <see cref="Version"/>; the policy is in eval mode while any loan is out.</summary>
    public sealed class Loan : IDisposable
    {
        readonly Gate _gate;
        int _returned;

        internal Loan(Gate gate, CausalLm policy, long version)
        {
            _gate = gate;
            Policy = policy;
            Version = version;
        }

        public CausalLm Policy { get; }
        public long Version { get; }

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _returned, 1) == 0) _gate.Return();
        }
    }

    /// <summary>Loans out and the update flag of one learner's policy, under one lock.</summary>
    internal sealed class Gate(Learner learner)
    {
        readonly Lock _sync = new();
        int _loans;
        bool _updating;
        bool _wasTraining;
        TaskCompletionSource? _allReturned;

        public Loan? TryBorrow(long minVersion, long maxVersion)
        {
            lock (_sync)
            {
                var version = learner.WeightVersion;
                if (_updating || version < minVersion || version > maxVersion) return null;
                // Several generators may sample at once: the first loan switches dropout off, the last one restores it.
                if (_loans++ == 0)
                {
                    _wasTraining = learner.Policy.training;
                    learner.Policy.eval();
                }
                return new Loan(this, learner.Policy, version);
            }
        }

        public void Return()
        {
            lock (_sync)
            {
                if (--_loans > 0) return;
                if (_wasTraining) learner.Policy.train();
                _allReturned?.TrySetResult();
                _allReturned = null;
            }
        }

        public async Task<IDisposable> UpdateAsync()
        {
            Task wait;
            lock (_sync)
            {
                // One writer at a time is the learner grain's own turn-taking; this only keeps readers out.
                _updating = true;
                if (_loans == 0) return new Update(this);
                wait = (_allReturned ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
            }
            await wait;
            return new Update(this);
        }

        void EndUpdate()
        {
            lock (_sync) _updating = false;
        }

        sealed class Update(Gate gate) : IDisposable
        {
            int _ended;

            public void Dispose()
            {
                if (Interlocked.Exchange(ref _ended, 1) == 0) gate.EndUpdate();
            }
        }
    }

    sealed class NoUpdate : IDisposable
    {
        public static readonly NoUpdate Instance = new();

        public void Dispose() { }
    }
}
