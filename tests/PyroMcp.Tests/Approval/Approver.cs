namespace PyroMcp.Tests.Approval;

/// <summary>
/// Compares a contract (public API, help pages, MCP tool schemas) with its checked-in
/// <c>Approved/NAME.approved.txt</c>. A difference writes <c>NAME.received.txt</c> beside it and
/// fails; <c>PYRO_APPROVE=1</c> accepts the current output by overwriting the approved file.
/// </summary>
internal static class Approver
{
    internal const string AcceptVariable = "PYRO_APPROVE";

    internal static string Directory => Path.Combine(Repo.Root, "tests", "PyroMcp.Tests", "Approved");

    internal static void Verify(string name, string received)
    {
        received = Normalize(received);
        var approvedPath = Path.Combine(Directory, name + ".approved.txt");
        var receivedPath = Path.Combine(Directory, name + ".received.txt");
        if (Environment.GetEnvironmentVariable(AcceptVariable) == "1")
        {
            System.IO.Directory.CreateDirectory(Directory);
            File.WriteAllText(approvedPath, received);
            File.Delete(receivedPath);
            return;
        }

        var approved = File.Exists(approvedPath) ? Normalize(File.ReadAllText(approvedPath)) : null;
        if (approved == received)
        {
            File.Delete(receivedPath);
            return;
        }

        File.WriteAllText(receivedPath, received);
        var where = approved is null ? $"{Relative(approvedPath)} does not exist yet" : FirstDifference(approved, received);
        Assert.Fail(
            $"{name} differs from what was approved: {where}\n" +
            $"Received: {Relative(receivedPath)}\n" +
            $"  see the change:  diff -u {Relative(approvedPath)} {Relative(receivedPath)}\n" +
            $"  if it is intended, accept it (overwrites every approved file these tests produce):\n" +
            $"    {AcceptVariable}=1 dotnet test tests/PyroMcp.Tests -c Release --filter Category=Approval\n" +
            "  and commit the changed Approved/ files with the change that caused them.");
    }

    /// <summary>\n line ends, no trailing blanks on a line (editors strip them), one newline at the end.</summary>
    private static string Normalize(string text)
        => string.Join('\n', text.Replace("\r\n", "\n", StringComparison.Ordinal).Split('\n').Select(l => l.TrimEnd(' ', '\t'))).TrimEnd('\n') + "\n";

    private static string FirstDifference(string approved, string received)
    {
        var a = approved.Split('\n');
        var r = received.Split('\n');
        for (var i = 0; i < Math.Max(a.Length, r.Length); i++)
        {
            var left = i < a.Length ? a[i] : "<end of file>";
            var right = i < r.Length ? r[i] : "<end of file>";
            if (left != right)
            {
                return $"first at line {i + 1}:\n  approved: {left}\n  received: {right}";
            }
        }

        return "they differ";
    }

    private static string Relative(string path) => Path.GetRelativePath(Repo.Root, path);
}
