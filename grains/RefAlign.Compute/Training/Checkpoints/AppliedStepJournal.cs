using System.Globalization;
using System.Text;

namespace RefAlign.Compute.Training.Checkpoints;

/// <summary>
/// The learner's durable record of applied steps, beside its checkpoints: one line per applied step
/// (<c>apply STEP VERSION EPOCH</c>) and one per restore (<c>restore STEP VERSION EPOCH</c>), each flushed to disk before
/// the step is acknowledged; the epoch is the writing learner's, checked against <paramref name="fence"/> first, so a
/// learner the run has moved away from appends nothing. Replaying the journal (a restore drops what came after its step) gives the steps the current
/// weights contain; every step id must appear there exactly once, in order.
/// </summary>
public sealed class AppliedStepJournal(string path, EpochFence? fence = null)
{
    public const string FileName = "applied_steps.log";

    public string Path { get; } = path;

    public void Applied(int step, long version) => Append("apply", step, version);

    public void Restored(int step, long version) => Append("restore", step, version);

    void Append(string what, int step, long version)
    {
        fence?.Check();
        using var file = new FileStream(Path, FileMode.Append, FileAccess.Write, FileShare.Read);
        file.Write(Encoding.ASCII.GetBytes(string.Create(CultureInfo.InvariantCulture, $"{what} {step} {version} {fence?.Epoch ?? 0}\n")));
        file.Flush(flushToDisk: true);
    }

    /// <summary>The journal's entries in order (a missing file has none).</summary>
    public static IReadOnlyList<JournalEntry> Read(string path) =>
        !File.Exists(path) ? [] : [.. File.ReadAllLines(path).Where(l => l.Length > 0).Select(l => l.Split(' ')).Select(p =>
            new JournalEntry(p[0], int.Parse(p[1], CultureInfo.InvariantCulture), long.Parse(p[2], CultureInfo.InvariantCulture),
                p.Length > 3 ? long.Parse(p[3], CultureInfo.InvariantCulture) : 0))];

    /// <summary>
    /// The steps the final weights contain, from the entries: a restore to step c keeps the steps below c and drops the
    /// rest (they are replayed after it); throws when a step is applied twice without a restore in between, or out of order.
    /// </summary>
    public static IReadOnlyList<int> Lineage(IEnumerable<JournalEntry> entries)
    {
        var steps = new List<int>();
        foreach (var (kind, step, _, _) in entries)
        {
            if (kind == "restore")
            {
                if (step > steps.Count) throw new InvalidDataException($"restore to step {step} but only {steps.Count} steps were applied.");
                steps.RemoveRange(step, steps.Count - step);
            }
            else if (step != steps.Count)
            {
                throw new InvalidDataException($"step {step} applied when the weights held {steps.Count} steps (applied twice or skipped).");
            }
            else steps.Add(step);
        }
        return steps;
    }
}

/// <summary>One journal line: what happened (<c>apply</c> or <c>restore</c>), the step, the weight version, the learner's epoch.</summary>
public readonly record struct JournalEntry(string Kind, int Step, long Version, long Epoch);
