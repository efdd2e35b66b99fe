using RefAlign.Cli.Commands;

namespace RefAlign.Cli.Tests;

/// <summary>The sparkline and phase text an interactive watch or train bar shows beside itself.</summary>
public sealed class StepGlanceTests
{
    [Fact]
    public void Sparkline_scales_between_the_series_own_minimum_and_maximum()
    {
        Assert.Equal("▁▂▃▄▅▆▇█", StepGlance.Sparkline([0, 1, 2, 3, 4, 5, 6, 7], width: 8));
        Assert.Equal("▁█▁", StepGlance.Sparkline([-2.5, 10, -2.5], width: 8));
        Assert.Equal("▁▆█", StepGlance.Sparkline([0.1, 0.2, 0.25], width: 8)); // (0.2 - 0.1) / 0.15 · 7 = 4.67 → ▆
    }

    [Fact]
    public void Sparkline_keeps_the_last_width_values_and_marks_non_finite_ones()
    {
        Assert.Equal("▁█", StepGlance.Sparkline([9, 9, 9, 1, 2], width: 2));
        Assert.Equal("▄▄▄", StepGlance.Sparkline([3, 3, 3], width: 5)); // flat: the middle bar, not the floor
        Assert.Equal("▁ █", StepGlance.Sparkline([1, double.NaN, 2], width: 5));
        Assert.Equal("", StepGlance.Sparkline([], width: 5));
    }

    [Fact]
    public void Headline_is_reward_for_refalign_steps_and_loss_otherwise()
    {
        Assert.Equal("reward/mean", StepGlance.Headline(new Dictionary<string, double> { ["loss"] = 1, ["reward/mean"] = 0.4 }));
        Assert.Equal("loss", StepGlance.Headline(new Dictionary<string, double> { ["loss"] = 0.69, ["rewards/accuracies"] = 0.5 }));
        Assert.Null(StepGlance.Headline(new Dictionary<string, double> { ["tokens_per_second"] = 100 }));
    }

    [Fact]
    public void Glance_shows_the_headline_trend_and_the_last_steps_phases_without_the_total()
    {
        var glance = new StepGlance(width: 4);
        Assert.Equal("", glance.ToString());
        for (var step = 1; step <= 5; step++)
            glance.Add(step, new Dictionary<string, double> { ["loss"] = 1.0 / step },
                [new("generate", 0.5 * step), new("learn", 1.25), new("step", 9)]);
        Assert.Equal("loss █▄▂▁ 0.2 · generate 2.50s learn 1.25s", glance.ToString());

        // A replayed step replaces its value rather than adding a point.
        glance.Add(5, new Dictionary<string, double> { ["loss"] = 0.5 }, []);
        Assert.Equal("loss █▃▁█ 0.5 · generate 2.50s learn 1.25s", glance.ToString());
    }

    [Fact]
    public void Phases_keep_the_order_the_step_ran_them_in()
    {
        Assert.Equal("generate 1.20s score 0.31s learn 2.05s",
            StepGlance.Phases([new("generate", 1.2), new("score", 0.305), new("learn", 2.049)]));
    }
}
