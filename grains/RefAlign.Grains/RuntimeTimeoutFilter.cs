using Polly.Timeout;

namespace RefAlign.Grains;

/// <summary>
/// The runtime's own timeouts (Polly's <see cref="TimeoutRejectedException"/>, e.g. from the grain directory) have no
/// codec, so a grain that let one escape would send its caller a codec error instead of a fault it can classify. Every
/// grain call on this silo turns one into a <see cref="TimeoutException"/>, which crosses as itself.
/// </summary>
public sealed class RuntimeTimeoutFilter : IIncomingGrainCallFilter
{
    public async Task Invoke(IIncomingGrainCallContext context)
    {
        try
        {
            await context.Invoke();
        }
        catch (TimeoutRejectedException e)
        {
            throw new TimeoutException($"{context.InterfaceName}.{context.MethodName}: the runtime timed out ({e.Message})");
        }
    }
}
