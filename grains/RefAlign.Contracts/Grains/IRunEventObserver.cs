using Orleans.Concurrency;
using RefAlign.Contracts.Control;

namespace RefAlign.Contracts.Grains;

/// <summary>
/// A watcher of a run's event log: the run grain pushes each event as it is appended (one way: a slow or vanished
/// watcher never holds up the run). Watchers catch up from <see cref="ITrainingRunGrain.GetEvents"/> on any gap.
/// </summary>
public interface IRunEventObserver : IGrainObserver
{
    [OneWay]
    Task OnEvent(RunEvent e);
}
