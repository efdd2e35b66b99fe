// The MSBuild task of build/TorchSharpKeepAlive.targets: rewrites a copy of TorchSharp.dll so that every method calling
// into libtorch keeps its TorchSharp arguments (Scalar, Tensor, …) and `this` reachable until it returns.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using Microsoft.Build.Framework;
using Mono.Cecil;
using Mono.Cecil.Cil;

public sealed class KeepTorchSharpArgumentsAlive : Microsoft.Build.Utilities.Task
{
    /// <summary>The assembly-level AssemblyMetadata key the rewritten file carries (value: how many methods were rewritten).</summary>
    const string MarkerKey = "RefAlign.NativeArgumentsKeptAlive";

    /// <summary>Part of the cache key: change it whenever the rewrite changes, so no stale rewritten file is reused.</summary>
    const string Revision = "r2";

    [Required] public string AssemblyPath { get; set; } = "";
    [Required] public string CacheDir { get; set; } = "";
    [Required] public string CecilDir { get; set; } = "";

    public override bool Execute()
    {
        Directory.CreateDirectory(CacheDir);
        var hash = Sha256(AssemblyPath);
        // A "<hash>.patched" file names a rewritten output: the copy in place is already done.
        if (File.Exists(Path.Combine(CacheDir, hash + ".patched"))) return true;
        var cached = Path.Combine(CacheDir, hash + "-" + Revision + ".dll");
        if (!File.Exists(cached))
        {
            var tmp = cached + "." + Guid.NewGuid().ToString("N");
            ResolveEventHandler cecil = (_, e) => new AssemblyName(e.Name).Name == "Mono.Cecil"
                ? Assembly.LoadFrom(Path.Combine(CecilDir, "Mono.Cecil.dll")) : null;
            AppDomain.CurrentDomain.AssemblyResolve += cecil;
            int count;
            try { count = Rewrite(AssemblyPath, tmp); }
            finally { AppDomain.CurrentDomain.AssemblyResolve -= cecil; }
            if (count < 0)
            {
                // Rewritten already (its marker file was lost): remember it, never rewrite it twice.
                File.Delete(tmp);
                File.WriteAllText(Path.Combine(CacheDir, hash + ".patched"), "\n");
                return true;
            }
            if (count == 0)
            {
                File.Delete(tmp);
                Log.LogError($"{AssemblyPath}: no method calling into libtorch with a TorchSharp argument was found; is this TorchSharp?");
                return false;
            }
            File.WriteAllText(Path.Combine(CacheDir, Sha256(tmp) + ".patched"), count.ToString(CultureInfo.InvariantCulture) + "\n");
            // Builds of several projects may race here; the first file in place wins (they are identical).
            try { File.Move(tmp, cached); }
            catch (IOException) when (File.Exists(cached)) { File.Delete(tmp); }
            Log.LogMessage(MessageImportance.High, $"TorchSharp.dll: {count} methods keep their TorchSharp arguments alive across native calls");
        }
        File.Copy(cached, AssemblyPath, overwrite: true);
        return true;
    }

    static string Sha256(string path)
    {
        using var sha = SHA256.Create();
        using var f = File.OpenRead(path);
        return string.Concat(sha.ComputeHash(f).Select(b => b.ToString("x2", CultureInfo.InvariantCulture)));
    }

    /// <summary>Writes the rewritten assembly to <paramref name="output"/>; returns how many methods changed (−1: the input is rewritten already).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)] // Mono.Cecil is resolved when this is compiled, after the handler is in place
    static int Rewrite(string input, string output)
    {
        var resolver = new DefaultAssemblyResolver();
        resolver.AddSearchDirectory(Path.GetDirectoryName(input));
        resolver.AddSearchDirectory(Path.GetDirectoryName(typeof(object).Assembly.Location));
        using var module = ModuleDefinition.ReadModule(input, new ReaderParameters { InMemory = true, AssemblyResolver = resolver });
        if (module.Assembly.CustomAttributes.Any(a => a.AttributeType.Name == "AssemblyMetadataAttribute"
                && a.ConstructorArguments.Count == 2 && (string)a.ConstructorArguments[0].Value == MarkerKey)) return -1;
        var corlib = module.TypeSystem.CoreLibrary;
        var keepAlive = new MethodReference("KeepAlive", module.TypeSystem.Void, new TypeReference("System", "GC", module, corlib));
        keepAlive.Parameters.Add(new ParameterDefinition(module.TypeSystem.Object));

        // Every TorchSharp reference type (Tensor, Scalar, Generator, modules…) and arrays of them: objects whose
        // finalizers free native memory that the call may still read.
        // (By-ref, pointer and generic parameters are left alone: KeepAlive takes an object.)
        bool Kept(TypeReference t) => (t is ArrayType { Rank: 1 } a ? a.ElementType : t) is { } e && e is not TypeSpecification and not GenericParameter
            && e.Resolve() is { } d && d.Module == module && !d.IsValueType;
        static bool CallsLibTorch(Mono.Cecil.Cil.MethodBody body) => body.Instructions.Any(i =>
            i.OpCode.FlowControl == FlowControl.Call && i.Operand is MethodReference m && m.DeclaringType.FullName == "TorchSharp.PInvoke.NativeMethods");

        var count = 0;
        foreach (var method in module.GetTypes().SelectMany(t => t.Methods))
        {
            if (!method.HasBody || !CallsLibTorch(method.Body)) continue;
            var kept = new List<ParameterDefinition>();
            if (method.HasThis && Kept(method.DeclaringType)) kept.Add(method.Body.ThisParameter);
            kept.AddRange(method.Parameters.Where(p => Kept(p.ParameterType)));
            if (kept.Count == 0) continue;
            var body = method.Body;
            LongBranches(body);
            var il = body.GetILProcessor();
            foreach (var ret in body.Instructions.Where(i => i.OpCode == OpCodes.Ret).ToList())
            {
                // The ret becomes the first load, so every branch that returned lands before the KeepAlive calls;
                // the return value stays on the stack beneath them.
                ret.OpCode = OpCodes.Ldarg;
                ret.Operand = kept[0];
                var at = Append(il, ret, il.Create(OpCodes.Call, keepAlive));
                foreach (var p in kept.Skip(1))
                    at = Append(il, Append(il, at, il.Create(OpCodes.Ldarg, p)), il.Create(OpCodes.Call, keepAlive));
                Append(il, at, il.Create(OpCodes.Ret));
            }
            count++;
        }

        var metadata = new MethodReference(".ctor", module.TypeSystem.Void, new TypeReference("System.Reflection", "AssemblyMetadataAttribute", module, corlib)) { HasThis = true };
        metadata.Parameters.Add(new ParameterDefinition(module.TypeSystem.String));
        metadata.Parameters.Add(new ParameterDefinition(module.TypeSystem.String));
        var marker = new CustomAttribute(metadata);
        marker.ConstructorArguments.Add(new CustomAttributeArgument(module.TypeSystem.String, MarkerKey));
        marker.ConstructorArguments.Add(new CustomAttributeArgument(module.TypeSystem.String, count.ToString(CultureInfo.InvariantCulture)));
        module.Assembly.CustomAttributes.Add(marker);
        module.Write(output);
        return count;
    }

    /// <summary>Short branches become long ones: the inserted calls may put a target out of a short branch's reach.</summary>
    static void LongBranches(Mono.Cecil.Cil.MethodBody body)
    {
        foreach (var i in body.Instructions)
            i.OpCode = i.OpCode.Code switch
            {
                Code.Br_S => OpCodes.Br, Code.Brfalse_S => OpCodes.Brfalse, Code.Brtrue_S => OpCodes.Brtrue,
                Code.Beq_S => OpCodes.Beq, Code.Bge_S => OpCodes.Bge, Code.Bgt_S => OpCodes.Bgt, Code.Ble_S => OpCodes.Ble,
                Code.Blt_S => OpCodes.Blt, Code.Bne_Un_S => OpCodes.Bne_Un, Code.Bge_Un_S => OpCodes.Bge_Un,
                Code.Bgt_Un_S => OpCodes.Bgt_Un, Code.Ble_Un_S => OpCodes.Ble_Un, Code.Blt_Un_S => OpCodes.Blt_Un,
                Code.Leave_S => OpCodes.Leave,
                _ => i.OpCode,
            };
    }

    static Instruction Append(ILProcessor il, Instruction after, Instruction next)
    {
        il.InsertAfter(after, next);
        return next;
    }
}
