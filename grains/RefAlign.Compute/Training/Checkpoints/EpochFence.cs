using System.Globalization;
using System.Text;

namespace RefAlign.Compute.Training.Checkpoints;

/// <summary>
/// The epoch that owns a run's checkpoint folder (file <c>epoch</c>): the run hands each learner it starts a higher epoch,
/// the learner claims the folder with it, and checks it before every durable write. A learner whose silo froze and came
/// back after the run moved on finds a newer epoch there and writes nothing. The check and the write are two steps: a
/// writer frozen exactly between them is not stopped, which the rename-into-place of checkpoints keeps to microseconds.
/// </summary>
public sealed class EpochFence(string folder, long epoch)
{
    public const string FileName = "epoch";

    public long Epoch => epoch;

    string Path => System.IO.Path.Combine(folder, FileName);

    /// <summary>The epoch stored in the folder (0 when none was).</summary>
    public long Stored() =>
        File.Exists(Path) && long.TryParse(File.ReadAllText(Path, Encoding.ASCII).Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var e) ? e : 0;

    /// <summary>Raises the folder's epoch to this one; throws <see cref="StaleEpochException"/> when a newer one owns it.</summary>
    public void Claim()
    {
        Directory.CreateDirectory(folder);
        if (Stored() is var stored && stored > epoch) throw new StaleEpochException(folder, epoch, stored);
        if (stored == epoch) return;
        var temp = System.IO.Path.Combine(folder, $".tmp-{FileName}-{Guid.NewGuid():N}");
        using (var file = new FileStream(temp, FileMode.CreateNew, FileAccess.Write))
        {
            file.Write(Encoding.ASCII.GetBytes(epoch.ToString(CultureInfo.InvariantCulture) + "\n"));
            file.Flush(flushToDisk: true);
        }
        File.Move(temp, Path, overwrite: true);
    }

    /// <summary>Throws <see cref="StaleEpochException"/> when a newer epoch owns the folder.</summary>
    public void Check()
    {
        if (Stored() is var stored && stored > epoch) throw new StaleEpochException(folder, epoch, stored);
    }
}

/// <summary>A learner of an older epoch tried to write into a run that a newer learner owns.</summary>
public sealed class StaleEpochException(string folder, long epoch, long owner)
    : Exception($"{folder}: learner epoch {epoch} may no longer write here; epoch {owner} owns the run now.")
{
    public long Epoch => epoch;

    public long Owner => owner;
}
