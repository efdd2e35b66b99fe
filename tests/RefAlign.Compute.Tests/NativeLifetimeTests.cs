using TorchSharp;
using static TorchSharp.torch;

namespace RefAlign.Compute.Tests;

/// <summary>
/// TorchSharp makes temporary Scalars on every call like <c>x + y</c> (alpha 1) or <c>masked_fill(m, 0.0)</c>, and the
/// argument of the call that reads the native handle is their only reference. The build keeps each such argument alive
/// until the call returns (build/TorchSharpKeepAlive.targets, docs/architecture.md "Native lifetimes"); without that a
/// collection during the native call lets the finalizer thread free the scalar while libtorch still reads it.
/// </summary>
public sealed class NativeLifetimeTests
{
    const int Elements = 1 << 24;

    [Theory]
    [InlineData(nameof(Tensor.masked_fill), new[] { typeof(Tensor), typeof(Scalar) })]
    [InlineData(nameof(Tensor.add), new[] { typeof(Tensor), typeof(Scalar) })]
    [InlineData(nameof(Tensor.mul), new[] { typeof(Scalar) })]
    public void The_loaded_TorchSharp_keeps_the_arguments_of_its_native_calls_alive(string name, Type[] parameters)
    {
        var method = typeof(Tensor).GetMethod(name, parameters)!;
        var keepAlive = typeof(GC).GetMethod(nameof(GC.KeepAlive))!;
        var il = method.GetMethodBody()!.GetILAsByteArray()!;
        var calls = Enumerable.Range(0, il.Length - 4).Where(i => il[i] == 0x28) // call <token>
            .Select(i => { try { return method.Module.ResolveMethod(BitConverter.ToInt32(il, i + 1)); } catch (ArgumentException) { return null; } })
            .Count(m => m == keepAlive);
        // `this` and every Scalar or Tensor argument, before the one return.
        Assert.True(calls == parameters.Length + 1, $"{typeof(Scalar).Assembly.Location}: {name} calls GC.KeepAlive {calls} times; it is TorchSharp as published");
    }

    [Fact]
    public void Temporary_scalars_outlive_the_native_calls_that_read_them_while_collections_run()
    {
        using var stop = new CancellationTokenSource();
        var collections = 0;
        // Collections and finalizers back to back on another thread: any scalar left unreachable during a call is freed.
        var collector = new Thread(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
                Interlocked.Increment(ref collections);
            }
        }) { IsBackground = true };
        collector.Start();
        try
        {
            using var ones = torch.ones(Elements);
            using var mask = torch.arange(Elements) % 2 == 0;
            for (var i = 0; i < 50; i++)
            {
                using var scope = NewDisposeScope();
                // The out-of-place fill copies the input before it reads the scalar: a long window for the finalizer.
                var filled = ones.masked_fill(mask, 2.5);
                Assert.Equal((2.5f, 1f), (filled[0].item<float>(), filled[1].item<float>()));
            }
        }
        finally
        {
            stop.Cancel();
            collector.Join();
        }
        Assert.True(collections > 0, "the collector thread never ran a collection");
    }
}
