using System.Globalization;

namespace RefAlign.Compute.Training;

/// <summary>
/// A training step whose loss term or gradient is not finite (NaN, ±∞): the step fails naming its number and the term,
/// and its update is not applied. Not a transient fault: the same step fails again, so the run fails, never completes.
/// </summary>
public sealed class NonFiniteStepException(int step, string term, double value, string consequence)
    : Exception(string.Create(CultureInfo.InvariantCulture,
        $"step {step}: the term '{term}' is {value.ToString(CultureInfo.InvariantCulture)}; {consequence}. Check optimizer.learning_rate, preference.beta and preference.lambda, and the data."))
{
    public int Step { get; } = step;

    public string Term { get; } = term;
}
