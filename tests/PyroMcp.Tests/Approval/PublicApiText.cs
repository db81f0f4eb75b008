using System.Reflection;
using System.Runtime.CompilerServices;
using System.Text;

namespace PyroMcp.Tests.Approval;

/// <summary>
/// Writes an assembly's public surface as text, one line per type and member, sorted: every
/// public type and its public and protected members with their signatures (nullability
/// included), enum values and constants. What the compiler generates (record plumbing, accessors)
/// is left out; a change of anything written here is a change of the contract.
/// </summary>
internal static class PublicApiText
{
    private const BindingFlags Declared = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;

    private static readonly NullabilityInfoContext Nullability = new();

    internal static string Describe(Assembly assembly)
    {
        var text = new StringBuilder();
        foreach (var type in assembly.GetExportedTypes().OrderBy(t => t.FullName, StringComparer.Ordinal))
        {
            text.Append(TypeHeader(type)).Append('\n');
            // Constants and fields, constructors, properties, events, methods; by name within each.
            foreach (var (_, _, line) in Members(type).OrderBy(m => m.Kind).ThenBy(m => m.Name, StringComparer.Ordinal).ThenBy(m => m.Line, StringComparer.Ordinal))
            {
                text.Append("    ").Append(line).Append('\n');
            }

            text.Append('\n');
        }

        return text.ToString();
    }

    private static string TypeHeader(Type type)
    {
        var kind = type switch
        {
            { IsEnum: true } => "enum",
            { IsInterface: true } => "interface",
            _ when typeof(Delegate).IsAssignableFrom(type.BaseType) => "delegate",
            { IsValueType: true } => IsRecord(type) ? "record struct" : "struct",
            _ => IsRecord(type) ? "record" : "class",
        };
        var modifiers = type switch
        {
            { IsClass: true, IsAbstract: true, IsSealed: true } => "static ",
            { IsClass: true, IsAbstract: true } when kind != "interface" => "abstract ",
            { IsClass: true, IsSealed: true } when kind != "delegate" => "sealed ",
            _ => "",
        };
        var header = $"public {modifiers}{kind} {Name(type, qualified: true)}";
        if (type.IsEnum)
        {
            return header + " : " + Name(Enum.GetUnderlyingType(type));
        }

        var bases = new List<string>();
        if (type.BaseType is { } b && b != typeof(object) && b != typeof(ValueType) && kind != "delegate")
        {
            bases.Add(Name(b, qualified: true));
        }

        var inherited = type.BaseType?.GetInterfaces() ?? [];
        bases.AddRange(type.GetInterfaces().Except(inherited).Where(i => i.IsPublic || i.IsNestedPublic).Where(i => !IsRecordEquatable(type, i))
            .Select(i => Name(i, qualified: true)).Order(StringComparer.Ordinal));
        return bases.Count == 0 ? header : header + " : " + string.Join(", ", bases);
    }

    private static IEnumerable<(int Kind, string Name, string Line)> Members(Type type)
    {
        if (type.IsEnum)
        {
            // In value order: the order of an enum's members is part of how it reads.
            foreach (var field in type.GetFields(BindingFlags.Public | BindingFlags.Static))
            {
                var value = Convert.ToInt64(field.GetRawConstantValue(), System.Globalization.CultureInfo.InvariantCulture);
                yield return (0, value.ToString("D20", System.Globalization.CultureInfo.InvariantCulture), $"{field.Name} = {value}");
            }

            yield break;
        }

        foreach (var member in type.GetMembers(Declared))
        {
            if (!Visible(member) || member.IsDefined(typeof(CompilerGeneratedAttribute)) || member.Name.Contains('<'))
            {
                continue;
            }

            (int Kind, string? Line) entry = member switch
            {
                FieldInfo f when !f.IsSpecialName => (0, Field(f)),
                ConstructorInfo c => (1, $"{Access(c)}{(c.IsStatic ? "static " : "")}ctor({Parameters(c.GetParameters())})"),
                PropertyInfo p => (2, Property(p)),
                EventInfo e => (3, $"{Access(e.AddMethod!)}event {Name(e.EventHandlerType!)} {e.Name}"),
                MethodInfo m when !m.IsSpecialName || m.Name.StartsWith("op_", StringComparison.Ordinal) => (4, Method(m)),
                _ => (0, null),
            };
            if (entry.Line is not null)
            {
                yield return (entry.Kind, member.Name, entry.Line);
            }
        }
    }

    private static bool Visible(MemberInfo member) => member switch
    {
        MethodBase m => m.IsPublic || m.IsFamily || m.IsFamilyOrAssembly,
        FieldInfo f => f.IsPublic || f.IsFamily || f.IsFamilyOrAssembly,
        PropertyInfo p => new[] { p.GetMethod, p.SetMethod }.Any(a => a is not null && Visible(a)),
        EventInfo e => e.AddMethod is { } add && Visible(add),
        _ => false,
    };

    private static string Access(MethodBase method) => method.IsPublic ? "public " : "protected ";

    private static string Method(MethodInfo method)
    {
        var generic = method.IsGenericMethodDefinition ? "<" + string.Join(", ", method.GetGenericArguments().Select(a => a.Name)) + ">" : "";
        return $"{Access(method)}{Modifiers(method)}{Name(method.ReturnParameter)} {method.Name}{generic}({Parameters(method.GetParameters())})";
    }

    private static string Modifiers(MethodInfo method)
    {
        if (method.IsStatic)
        {
            return "static ";
        }

        if (method.IsAbstract && !method.DeclaringType!.IsInterface)
        {
            return "abstract ";
        }

        if (method.IsVirtual && !method.IsFinal && !method.DeclaringType!.IsInterface)
        {
            return method.GetBaseDefinition() == method ? "virtual " : "override ";
        }

        return method.IsVirtual && method.GetBaseDefinition() != method ? "override " : "";
    }

    private static string Property(PropertyInfo property)
    {
        // The property is as visible as its most visible accessor; a narrower accessor says so.
        var accessor = new[] { property.GetMethod, property.SetMethod }.Where(a => a is not null && Visible(a)).OrderBy(a => a!.IsPublic ? 0 : 1).First()!;
        var accessors = new List<string>();
        if (property.GetMethod is { } get && Visible(get))
        {
            accessors.Add((get.IsPublic || !accessor.IsPublic ? "" : "protected ") + "get;");
        }

        if (property.SetMethod is { } set && Visible(set))
        {
            var init = set.ReturnParameter.GetRequiredCustomModifiers().Any(m => m.FullName == "System.Runtime.CompilerServices.IsExternalInit");
            accessors.Add((set.IsPublic || !accessor.IsPublic ? "" : "protected ") + (init ? "init;" : "set;"));
        }

        var required = property.IsDefined(typeof(RequiredMemberAttribute)) ? "required " : "";
        var indexer = property.GetIndexParameters() is { Length: > 0 } index ? $"this[{Parameters(index)}]" : property.Name;
        return $"{Access(accessor)}{required}{(accessor.IsStatic ? "static " : "")}{Name(Nullability.Create(property))} {indexer} {{ {string.Join(' ', accessors)} }}";
    }

    private static string Field(FieldInfo field)
    {
        var head = $"{(field.IsPublic ? "public " : "protected ")}";
        if (field.IsLiteral)
        {
            return $"{head}const {Name(field.FieldType)} {field.Name} = {Literal(field.GetRawConstantValue())}";
        }

        return $"{head}{(field.IsStatic ? "static " : "")}{(field.IsInitOnly ? "readonly " : "")}{Name(Nullability.Create(field))} {field.Name}";
    }

    private static string Parameters(ParameterInfo[] parameters) => string.Join(", ", parameters.Select(p =>
    {
        var prefix = p.IsOut ? "out " : p.ParameterType.IsByRef ? (p.IsIn ? "in " : "ref ") : p.IsDefined(typeof(ParamArrayAttribute)) ? "params " : "";
        var value = !p.HasDefaultValue ? ""
            : p.DefaultValue is null && p.ParameterType.IsValueType && Nullable.GetUnderlyingType(p.ParameterType) is null ? " = default"
            : " = " + Literal(p.DefaultValue);
        return $"{prefix}{Name(p)} {p.Name}{value}";
    }));

    private static string Literal(object? value) => value switch
    {
        null => "null",
        string s => "\"" + s.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal) + "\"",
        bool b => b ? "true" : "false",
        IFormattable f => f.ToString(null, System.Globalization.CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };

    private static string Name(ParameterInfo parameter) => Name(Nullability.Create(parameter));

    private static string Name(NullabilityInfo info)
    {
        var type = info.Type.IsByRef ? info.Type.GetElementType()! : info.Type;
        string name;
        if (info.ElementType is { } element)
        {
            name = Name(element) + "[]";
        }
        else if (type.IsGenericType && Nullable.GetUnderlyingType(type) is null)
        {
            var definition = Name(type.GetGenericTypeDefinition(), qualified: true);
            name = definition[..definition.IndexOf('<', StringComparison.Ordinal)] + "<" + string.Join(", ", info.GenericTypeArguments.Select(Name)) + ">";
        }
        else
        {
            name = Name(type);
        }

        // A type parameter's annotation is not reliably readable (T and T? look alike): never marked.
        return info.ReadState == NullabilityState.Nullable && !type.IsValueType && !type.IsGenericParameter ? name + "?" : name;
    }

    /// <summary>C# spelling: keywords for the built-in types, T? for Nullable&lt;T&gt;, namespaces on everything else.</summary>
    internal static string Name(Type type, bool qualified = true)
    {
        if (type.IsByRef)
        {
            return Name(type.GetElementType()!, qualified);
        }

        if (Nullable.GetUnderlyingType(type) is { } underlying)
        {
            return Name(underlying, qualified) + "?";
        }

        if (type.IsArray)
        {
            return Name(type.GetElementType()!, qualified) + "[" + new string(',', type.GetArrayRank() - 1) + "]";
        }

        if (type.IsGenericParameter)
        {
            return type.Name;
        }

        var keyword = Type.GetTypeCode(type) switch
        {
            TypeCode.Boolean => "bool",
            TypeCode.Byte => "byte",
            TypeCode.SByte => "sbyte",
            TypeCode.Char => "char",
            TypeCode.Int16 => "short",
            TypeCode.UInt16 => "ushort",
            TypeCode.Int32 => "int",
            TypeCode.UInt32 => "uint",
            TypeCode.Int64 => "long",
            TypeCode.UInt64 => "ulong",
            TypeCode.Single => "float",
            TypeCode.Double => "double",
            TypeCode.Decimal => "decimal",
            TypeCode.String => "string",
            _ => type == typeof(object) ? "object" : type == typeof(void) ? "void" : null,
        };
        if (keyword is not null && !type.IsEnum)
        {
            return keyword;
        }

        var name = type.Name;
        var tick = name.IndexOf('`', StringComparison.Ordinal);
        if (tick >= 0)
        {
            name = name[..tick];
        }

        if (type.IsGenericType)
        {
            name += "<" + string.Join(", ", type.GetGenericArguments().Select(a => Name(a, qualified))) + ">";
        }

        if (type.IsNested)
        {
            return Name(type.DeclaringType!, qualified) + "." + name;
        }

        return qualified && type.Namespace is { Length: > 0 } ns ? ns + "." + name : name;
    }

    private static bool IsRecord(Type type) => type.GetMethod("<Clone>$") is not null
        || (type.IsValueType && type.GetMethod("PrintMembers", BindingFlags.NonPublic | BindingFlags.Instance) is not null);

    private static bool IsRecordEquatable(Type type, Type iface)
        => IsRecord(type) && iface.IsGenericType && iface.GetGenericTypeDefinition() == typeof(IEquatable<>) && iface.GetGenericArguments()[0] == type;
}
