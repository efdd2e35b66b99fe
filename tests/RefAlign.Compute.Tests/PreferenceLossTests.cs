using RefAlign.Compute.Losses;
using static TorchSharp.torch;

namespace RefAlign.Compute.Tests;

public sealed class PreferenceLossTests
{
    const double Tol = 1e-6;

    // Spec §2 reference batch (β = 0.1): h = [0, 10, 20].
    static readonly double[] PolicyChosen = [-0.5, -10.0, -1.0];
    static readonly double[] PolicyRejected = [-0.1, -30.0, -21.0];
    static readonly double[] RefChosen = [-0.5, -10.1, -0.1];
    static readonly double[] RefRejected = [-0.1, -20.1, -0.1];

    // Prompted tuples with h_p = [−2, 5, 12] (Δ = β·h_p = [−0.2, 0.5, 1.2]); non-zero references on purpose.
    static readonly double[] PromptedPolicyChosen = [-6.0, -4.0, -4.0];
    static readonly double[] PromptedPolicyRejected = [-3.0, -11.0, -29.0];
    static readonly double[] PromptedRefChosen = [-5.0, -6.0, -7.0];
    static readonly double[] PromptedRefRejected = [-4.0, -8.0, -20.0];

    static Tensor T(double[] v, bool grad = false) => tensor(v, dtype: ScalarType.Float64).requires_grad_(grad);

    static PreferenceLogProbs Plain(bool grad = false) =>
        new(T(PolicyChosen, grad), T(PolicyRejected, grad), T(RefChosen), T(RefRejected));

    static PreferenceLogProbs Prompted(bool grad = false) =>
        new(T(PromptedPolicyChosen, grad), T(PromptedPolicyRejected, grad), T(PromptedRefChosen), T(PromptedRefRejected));

    static double[] Values(Tensor t) => t.detach().to(ScalarType.Float64).data<double>().ToArray();

    static void AssertClose(double[] expected, double[] actual, double tol = Tol)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tol, $"[{i}]: expected {expected[i]}, got {actual[i]}");
    }

    static void AssertNoGrad(Tensor leaf)
    {
        var g = leaf.grad;
        Assert.True(g is null || Values(g).All(x => x == 0), "a stop-gradient input received a gradient");
    }

    static PreferenceLossResult Run(Algorithm kind, double lambda = 0.5, double eps = 0, bool grad = false,
        PreferenceLogProbs? plain = null, PreferenceLogProbs? prompted = null)
    {
        var loss = PreferenceLoss.Create(new PreferenceLossOptions { Kind = kind, Beta = 0.1, Lambda = lambda, LabelSmoothing = eps });
        return loss.Compute(plain ?? Plain(grad), prompted ?? Prompted());
    }

    static double Sigmoid(double x) => 1 / (1 + Math.Exp(-x));

    [Fact]
    public void DpoMatchesSpecReferenceValues()
    {
        using var r = Run(Algorithm.Dpo);
        AssertClose([0.69314718, 0.31326169, 0.12692801], Values(r.PerPair));
        AssertClose([(0.69314718 + 0.31326169 + 0.12692801) / 3], [r.Loss.to(ScalarType.Float64).item<double>()]);
        Assert.Empty(r.Loss.shape);
    }

    [Fact]
    public void CDpoMatchesHandComputedValues()
    {
        // −(1−ε)·log σ(z) − ε·log σ(−z) with z = βh = [0, 1, 2], ε = 0.1:
        // z=0: log 2 = 0.693147180560; z=1: 0.9·0.313261687518 + 0.1·1.313261687518 = 0.413261687518;
        // z=2: 0.9·0.126928011043 + 0.1·2.126928011043 = 0.326928011043.
        using var r = Run(Algorithm.CDpo, eps: 0.1);
        AssertClose([0.693147180560, 0.413261687518, 0.326928011043], Values(r.PerPair));
        using var dpo = Run(Algorithm.CDpo, eps: 0.0);
        AssertClose([0.69314718, 0.31326169, 0.12692801], Values(dpo.PerPair));
    }

    [Fact]
    public void IpoMatchesSpecReferenceValues()
    {
        using var r = Run(Algorithm.Ipo);
        AssertClose([25.0, 25.0, 225.0], Values(r.PerPair));
        AssertClose([275.0 / 3], [r.Metrics["loss"]]);
    }

    [Fact]
    public void SrDpoMatchesSpecReferenceValues()
    {
        using var r = Run(Algorithm.SrDpo, lambda: 0.5);
        AssertClose([0.64439666, 0.38687101, 0.22041741], Values(r.PerPair));
    }

    [Fact]
    public void SrIpoMatchesSpecReferenceValues()
    {
        using var r = Run(Algorithm.SrIpo, lambda: 0.5);
        AssertClose([24.01, 22.5625, 207.36], Values(r.PerPair));
    }

    [Fact]
    public void SrWithLambdaZeroIsThePlainLoss()
    {
        using var sr = Run(Algorithm.SrDpo, lambda: 0);
        using var dpo = Run(Algorithm.Dpo);
        AssertClose(Values(dpo.PerPair), Values(sr.PerPair), 1e-12);
        using var sri = Run(Algorithm.SrIpo, lambda: 0);
        using var ipo = Run(Algorithm.Ipo);
        AssertClose(Values(ipo.PerPair), Values(sri.PerPair), 1e-12);
    }

    [Theory]
    [InlineData(Algorithm.Dpo)]
    [InlineData(Algorithm.CDpo)]
    [InlineData(Algorithm.Ipo)]
    [InlineData(Algorithm.SrDpo)]
    [InlineData(Algorithm.SrIpo)]
    public void MetricsOnTheReferenceBatch(Algorithm kind)
    {
        using var r = Run(kind, eps: kind == Algorithm.CDpo ? 0.1 : 0);
        var m = r.Metrics;
        // rewards β(logπ − logπref): chosen [0, 0.01, −0.09], rejected [0, −0.99, −2.09].
        AssertClose([-0.08 / 3], [m["rewards/chosen"]]);
        AssertClose([-3.08 / 3], [m["rewards/rejected"]]);
        AssertClose([1.0], [m["rewards/margins"]]);
        AssertClose([2.0 / 3], [m["rewards/accuracies"]]); // the h = 0 row is a tie: not accurate
        AssertClose([-11.5 / 3], [m["logps/chosen"]]);
        AssertClose([-51.1 / 3], [m["logps/rejected"]]);
        AssertClose([r.Loss.to(ScalarType.Float64).item<double>()], [m["loss"]], 1e-12);
        AssertClose([Values(r.PerPair).Average()], [m["loss"]], 1e-12);
        var sr = kind is Algorithm.SrDpo or Algorithm.SrIpo;
        Assert.Equal(sr, m.ContainsKey("refine/delta"));
        Assert.Equal(sr, m.ContainsKey("rewards/prompted_accuracies"));
        if (sr)
        {
            AssertClose([0.5], [m["refine/delta"]]); // mean of [−0.2, 0.5, 1.2]
            AssertClose([2.0 / 3], [m["rewards/prompted_accuracies"]]);
        }
    }

    [Fact]
    public void PromptedAccuracyComesFromThePromptedTuples()
    {
        // Prompted: chosen rewards β·[−1, 0, −3], rejected β·[1, 0, 2] → one tie, two wrong: accuracy 0 (plain stays 2/3).
        var prompted = new PreferenceLogProbs(T([-6.0, -6.0, -10.0]), T([-3.0, -8.0, -18.0]), T([-5.0, -6.0, -7.0]), T([-4.0, -8.0, -20.0]));
        using var r = Run(Algorithm.SrDpo, prompted: prompted);
        AssertClose([0.0], [r.Metrics["rewards/prompted_accuracies"]]);
        AssertClose([2.0 / 3], [r.Metrics["rewards/accuracies"]]);
        AssertClose([0.1 * (-2 + 0 - 5) / 3], [r.Metrics["refine/delta"]]);
    }

    [Fact]
    public void SrDpoGradientIsDpoGradientAtTheShiftedLogit()
    {
        const double beta = 0.1, lambda = 0.5;
        var plain = Plain(grad: true);
        var promptedLeaves = Prompted(grad: true);
        var refLeaves = new PreferenceLogProbs(plain.PolicyChosen, plain.PolicyRejected, T(RefChosen, true), T(RefRejected, true));
        var loss = new SrDpoLoss(new PreferenceLossOptions { Kind = Algorithm.SrDpo, Beta = beta, Lambda = lambda });
        using var r = loss.Compute(refLeaves, promptedLeaves);
        r.Loss.backward();

        double[] h = [0, 10, 20], delta = [-0.2, 0.5, 1.2];
        const int b = 3;
        // d/d logπ(y+) of mean_b −log σ(z_b), z = βh − λΔ: −β·σ(−z)/B; the rejected side is the negative.
        var expected = h.Select((x, i) => -beta * Sigmoid(-(beta * x - lambda * delta[i])) / b).ToArray();
        AssertClose(expected, Values(plain.PolicyChosen.grad!), 1e-12);
        AssertClose([.. expected.Select(x => -x)], Values(plain.PolicyRejected.grad!), 1e-12);

        // Cross-check with DPO's autograd at the shifted logit: move λΔ/β into the chosen reference.
        var pc = T(PolicyChosen, true);
        var pr = T(PolicyRejected, true);
        var shiftedRef = T([.. RefChosen.Select((x, i) => x + lambda * delta[i] / beta)]);
        using var dpo = new DpoLoss(new PreferenceLossOptions { Beta = beta }).Compute(new(pc, pr, shiftedRef, T(RefRejected)), null);
        dpo.Loss.backward();
        AssertClose(Values(pc.grad!), Values(plain.PolicyChosen.grad!), 1e-12);
        AssertClose(Values(pr.grad!), Values(plain.PolicyRejected.grad!), 1e-12);

        // ⊥Δ: no gradient reaches the prompted pass (policy or reference), nor the plain reference.
        AssertNoGrad(promptedLeaves.PolicyChosen);
        AssertNoGrad(promptedLeaves.PolicyRejected);
        AssertNoGrad(refLeaves.ReferenceChosen);
        AssertNoGrad(refLeaves.ReferenceRejected);
    }

    [Fact]
    public void SrIpoGradientIgnoresDelta()
    {
        const double beta = 0.1, lambda = 0.5;
        var plain = Plain(grad: true);
        var promptedLeaves = Prompted(grad: true);
        var loss = new SrIpoLoss(new PreferenceLossOptions { Kind = Algorithm.SrIpo, Beta = beta, Lambda = lambda });
        using var r = loss.Compute(plain, promptedLeaves);
        r.Loss.backward();

        double[] h = [0, 10, 20], delta = [-0.2, 0.5, 1.2];
        // d/dh (h − λΔ − 1/(2β))² = 2(h − λΔ − 1/(2β)); mean over B = 3 pairs.
        var expected = h.Select((x, i) => 2 * (x - lambda * delta[i] - 1 / (2 * beta)) / 3).ToArray();
        AssertClose([-3.2666666666666666, 3.1666666666666666, 9.6], expected, 1e-12); // hand: 2·[−4.9, 4.75, 14.4]/3
        AssertClose(expected, Values(plain.PolicyChosen.grad!), 1e-9);
        AssertClose([.. expected.Select(x => -x)], Values(plain.PolicyRejected.grad!), 1e-9);
        AssertNoGrad(promptedLeaves.PolicyChosen);
        AssertNoGrad(promptedLeaves.PolicyRejected);
    }

    [Fact]
    public void PromptedGraphIsCutEvenWhenItCarriesAutograd()
    {
        // The prompted policy log-probs are a function of the same leaf as the plain ones: ⊥ must still cut them.
        var leaf = T(PolicyChosen, true);
        var promptedChosen = leaf * 1.0 + tensor(new[] { -5.5, 6.0, -3.0 }, dtype: ScalarType.Float64); // = PromptedPolicyChosen
        var plain = new PreferenceLogProbs(leaf * 1.0, T(PolicyRejected), T(RefChosen), T(RefRejected));
        var prompted = new PreferenceLogProbs(promptedChosen, T(PromptedPolicyRejected), T(PromptedRefChosen), T(PromptedRefRejected));
        using var r = Run(Algorithm.SrDpo, plain: plain, prompted: prompted);
        AssertClose([0.64439666, 0.38687101, 0.22041741], Values(r.PerPair));
        r.Loss.backward();
        var expected = new[] { 0.1, 0.75, 1.4 }.Select(z => -0.1 * Sigmoid(-z) / 3).ToArray();
        AssertClose(expected, Values(leaf.grad!), 1e-12);
    }

    [Fact]
    public void DpoIsNumericallyStableForLargeMargins()
    {
        var pc = tensor(new[] { 0f, -1e4f }, requires_grad: true);
        var pr = tensor(new[] { -1e4f, 0f }, requires_grad: true);
        var zero = zeros(2);
        using var r = new DpoLoss(new PreferenceLossOptions()).Compute(new(pc, pr, zero, zero), null);
        AssertClose([0.0, 1000.0], Values(r.PerPair), 1e-3); // z = βh = ±1000: −log σ(1000) ≈ 0, −log σ(−1000) = 1000
        r.Loss.backward();
        Assert.All(Values(pc.grad!), g => Assert.True(double.IsFinite(g)));
        AssertClose([0.0, -0.05], Values(pc.grad!), 1e-6);
    }

    [Fact]
    public void SelfRefinedLossesRequirePromptedLogProbs()
    {
        foreach (var kind in new[] { Algorithm.SrDpo, Algorithm.SrIpo })
        {
            var loss = PreferenceLoss.Create(new PreferenceLossOptions { Kind = kind });
            var ex = Assert.Throws<ArgumentException>(() => loss.Compute(Plain(), null));
            Assert.Equal("prompted", ex.ParamName);
            var short2 = new PreferenceLogProbs(T([-1.0, -2.0]), T([-1.0, -2.0]), T([-1.0, -2.0]), T([-1.0, -2.0]));
            Assert.Equal("prompted", Assert.Throws<ArgumentException>(() => loss.Compute(Plain(), short2)).ParamName);
        }
    }

    [Fact]
    public void MismatchedShapesAreRejected()
    {
        var loss = PreferenceLoss.Create(new PreferenceLossOptions());
        var bad = new PreferenceLogProbs(T([-1.0, -2.0]), T([-1.0]), T([-1.0, -2.0]), T([-1.0, -2.0]));
        Assert.Equal("plain", Assert.Throws<ArgumentException>(() => loss.Compute(bad, null)).ParamName);
        var twoD = new PreferenceLogProbs(zeros(2, 1), zeros(2, 1), zeros(2, 1), zeros(2, 1));
        Assert.Equal("plain", Assert.Throws<ArgumentException>(() => loss.Compute(twoD, null)).ParamName);
    }

    [Fact]
    public void FactoryReturnsTheNamedLoss()
    {
        Assert.IsType<DpoLoss>(PreferenceLoss.Create(new PreferenceLossOptions { Kind = Algorithm.Dpo }));
        Assert.IsType<CDpoLoss>(PreferenceLoss.Create(new PreferenceLossOptions { Kind = Algorithm.CDpo, LabelSmoothing = 0.1 }));
        Assert.IsType<IpoLoss>(PreferenceLoss.Create(new PreferenceLossOptions { Kind = Algorithm.Ipo }));
        Assert.IsType<SrDpoLoss>(PreferenceLoss.Create(new PreferenceLossOptions { Kind = Algorithm.SrDpo }));
        Assert.IsType<SrIpoLoss>(PreferenceLoss.Create(new PreferenceLossOptions { Kind = Algorithm.SrIpo }));
        Assert.True(new PreferenceLossOptions { Kind = Algorithm.SrDpo }.NeedsPrompted);
        Assert.True(new PreferenceLossOptions { Kind = Algorithm.SrIpo }.NeedsPrompted);
        Assert.False(new PreferenceLossOptions { Kind = Algorithm.Ipo }.NeedsPrompted);
        Assert.False(new PreferenceLossOptions().NeedsPrompted);
    }

    public static TheoryData<string, PreferenceLossOptions> InvalidOptions => new()
    {
        { "beta", new PreferenceLossOptions { Beta = 0 } },
        { "beta", new PreferenceLossOptions { Beta = -0.1 } },
        { "beta", new PreferenceLossOptions { Beta = double.NaN } },
        { "beta", new PreferenceLossOptions { Beta = double.PositiveInfinity } },
        { "label_smoothing", new PreferenceLossOptions { Kind = Algorithm.CDpo, LabelSmoothing = 0.5 } },
        { "label_smoothing", new PreferenceLossOptions { Kind = Algorithm.CDpo, LabelSmoothing = -0.01 } },
        { "label_smoothing", new PreferenceLossOptions { Kind = Algorithm.Dpo, LabelSmoothing = 0.1 } },
        { "lambda", new PreferenceLossOptions { Kind = Algorithm.SrDpo, Lambda = -0.5 } },
        { "lambda", new PreferenceLossOptions { Kind = Algorithm.SrIpo, Lambda = double.NaN } },
        { "refinement_prompt", new PreferenceLossOptions { Kind = Algorithm.SrDpo, RefinementPrompt = "  " } },
        { "refinement_prompt", new PreferenceLossOptions { Kind = Algorithm.SrIpo, RefinementPrompt = null! } },
        { "kind", new PreferenceLossOptions { Kind = (Algorithm)42 } },
    };

    [Theory]
    [MemberData(nameof(InvalidOptions))]
    public void ValidationNamesTheField(string field, PreferenceLossOptions options)
    {
        var ex = Assert.Throws<ArgumentException>(options.Validate);
        Assert.Equal(field, ex.ParamName);
        Assert.Contains(field, ex.Message);
        Assert.Equal(field, Assert.Throws<ArgumentException>(() => PreferenceLoss.Create(options)).ParamName);
    }

    [Fact]
    public void ValidOptionsPass()
    {
        new PreferenceLossOptions().Validate();
        new PreferenceLossOptions { Kind = Algorithm.CDpo, LabelSmoothing = 0.49 }.Validate();
        new PreferenceLossOptions { Kind = Algorithm.SrIpo, Lambda = 1, Beta = 0.5, RefinementPrompt = "Be helpful. Query:" }.Validate();
        var ex = Assert.Throws<ArgumentException>(() => new IpoLoss(new PreferenceLossOptions { Kind = Algorithm.Dpo }));
        Assert.Equal("kind", ex.ParamName);
    }

    [Fact]
    public void RefinementPromptIsThePapersTextFollowedByASpace()
    {
        Assert.Equal(SelfRefinementPrompt.Default, new PreferenceLossOptions().RefinementPrompt);
        Assert.StartsWith("Please generate a response with a usefulness rating of 100 out of 100", SelfRefinementPrompt.Default);
        Assert.EndsWith("where 100 is the maximum and 1 is the minimum. Query:", SelfRefinementPrompt.Default);
        Assert.Equal(SelfRefinementPrompt.Default + " How do I bake bread?", SelfRefinementPrompt.Apply(SelfRefinementPrompt.Default, "How do I bake bread?"));
        Assert.Equal("p: x", SelfRefinementPrompt.Apply("p:", "x"));
        Assert.Equal(SelfRefinementPrompt.Default + " q", SelfRefinementPrompt.Apply("q"));
    }
}
