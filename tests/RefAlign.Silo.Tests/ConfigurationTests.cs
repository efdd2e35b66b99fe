using RefAlign.Runtime;
using RefAlign.Silo.Hosting;

namespace RefAlign.Silo.Tests;

public sealed class ConfigurationTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("refalign-silo-config-").FullName;

    public ConfigurationTests()
    {
        File.WriteAllText(Path.Combine(_root, "appsettings.json"), """
            {
              "Silo": {
                "ClusterId": "from-json",
                "ServiceId": "from-json",
                "Device": "cpu",
                "Roles": [ "generator", "scorer" ],
                "ComputeThreads": 3,
                "GrpcPort": 6001
              }
            }
            """);
    }

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private SiloOptions Load(string[] args, Dictionary<string, string?>? environment = null)
    {
        var builder = SiloHost.CreateBuilder(args, new SiloHostOverrides { ContentRoot = _root, Environment = environment });
        return SiloOptionsReader.Read(builder.Configuration);
    }

    [Fact]
    public void Command_line_beats_environment_which_beats_appsettings()
    {
        var options = Load(
            ["--Silo:Device=cuda:1", "--Silo:Roles=learner,generator"],
            new()
            {
                ["REFALIGN_Silo__ServiceId"] = "from-env",
                ["REFALIGN_Silo__Device"] = "cuda:0",
                ["REFALIGN_Silo__Roles"] = "reference",
                ["Silo__GatewayPort"] = "31001", // unprefixed variables work too, below the prefixed ones
            });

        Assert.Equal("from-json", options.ClusterId);      // only in appsettings.json
        Assert.Equal("from-env", options.ServiceId);       // env over json
        Assert.Equal("cuda:1", options.Device);            // command line over env
        Assert.Equal([SiloRoles.Learner, SiloRoles.Generator], options.Roles);
        Assert.Equal(3, options.ComputeThreads);
        Assert.Equal(6001, options.GrpcPort);
        Assert.Equal(31001, options.GatewayPort);
        Assert.Equal(11111, options.SiloPort);             // default
    }

    [Fact]
    public void Json_array_roles_and_defaults_load()
    {
        var options = Load([]);
        Assert.Equal([SiloRoles.Generator, SiloRoles.Scorer], options.Roles);
        Assert.Equal(TimeSpan.FromSeconds(30), options.ShutdownGracePeriod);
        // Relative run-config paths resolve against the folder the silo was started from; runs write there too.
        Assert.Equal([Directory.GetCurrentDirectory()], options.DataRoots);
        Assert.Equal(Directory.GetCurrentDirectory(), options.OutputRoot);
    }

    [Fact]
    public void The_repository_root_appsettings_json_is_what_a_silo_reads_by_default()
    {
        var root = File.ReadAllText(Path.Combine(BuiltTools.RepositoryRoot, "appsettings.json"));
        Assert.Equal(root, File.ReadAllText(Path.Combine(Path.GetDirectoryName(BuiltTools.SiloDll)!, "appsettings.json")));
        Assert.Equal(root, File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "appsettings.json")));
        // No content-root override: the file beside the silo's assembly, whatever the working directory.
        var options = SiloOptionsReader.Read(SiloHost.CreateBuilder([]).Configuration);
        Assert.Equal((5080, 5081, 11111, 30000), (options.GrpcPort, options.HttpPort, options.SiloPort, options.GatewayPort));
        Assert.Equal(SiloRoles.All, options.Roles);
    }

    [Fact]
    public void Real_process_environment_variables_with_the_prefix_are_read()
    {
        const string name = "REFALIGN_Silo__DataRoots";
        Environment.SetEnvironmentVariable(name, "/data/from-process-env,/models");
        try
        {
            Assert.Equal(["/data/from-process-env", "/models"], Load([]).DataRoots);
            Assert.Equal("/data/from-process-env", Load([]).OutputRoot);
            Assert.Equal(["/data/from-cli"], Load(["--Silo:DataRoots=/data/from-cli"]).DataRoots);
            Assert.Equal("/out", Load(["--Silo:OutputRoot=/out"]).OutputRoot);
        }
        finally
        {
            Environment.SetEnvironmentVariable(name, null);
        }
    }

    [Theory]
    [InlineData("--Silo:GrpcPort=abc", "Silo:GrpcPort", "not an integer")]
    [InlineData("--Silo:SiloPort=70000", "Silo:SiloPort", "outside")]
    [InlineData("--Silo:Roles=learner,teacher", "Silo:Roles", "'teacher'")]
    [InlineData("--Silo:Device=gpu", "Silo:Device", "cuda:N")]
    [InlineData("--Silo:ComputeThreads=0", "Silo:ComputeThreads", "outside")]
    [InlineData("--Silo:TorchThreads=-1", "Silo:TorchThreads", "outside")]
    [InlineData("--Silo:ShutdownGracePeriod=soon", "Silo:ShutdownGracePeriod", "duration")]
    [InlineData("--Silo:HttpPort=6001", "Silo:HttpPort", "Silo:GrpcPort")]
    [InlineData("--Cluster:Provider=Redis", "Cluster:ConnectionString", "required")]
    [InlineData("--Cluster:Provider=Consul", "Cluster:Provider", "Localhost, Redis")]
    [InlineData("--Cluster:Kubernetes=true", "Cluster:Kubernetes", "Redis")]
    [InlineData("--Orleans:Clustering:Provider=Redis", "Orleans:Clustering:Provider", "Cluster:Provider")]
    public void A_bad_setting_fails_startup_with_its_name(string arg, string setting, string detail)
    {
        var error = Assert.Throws<SiloConfigurationException>(() => Load([arg]));
        Assert.Equal(setting, error.Setting);
        Assert.Contains($"'{setting}'", error.Message);
        Assert.Contains(detail, error.Message);
    }

    [Fact]
    public void Redis_settings_are_accepted_with_a_connection_string()
    {
        var builder = SiloHost.CreateBuilder(
            ["--Cluster:Provider=redis", "--Cluster:ConnectionString=localhost:6379", "--GrainStorage:Provider=Redis"],
            new SiloHostOverrides { ContentRoot = _root });
        var settings = OrleansSettings.Read(builder.Configuration);
        Assert.True(settings.IsRedisClustering);
        Assert.True(settings.IsRedisStorage);
        Assert.Equal("localhost:6379", settings.StorageConnectionString);
    }
}
