using System.Globalization;

namespace CacheHost.Protocols.Clacks;

/// <summary>
/// Perl number semantics for INCREMENT/DECREMENT (clacks §8.4) and Perl-style printing of doubles
/// (<c>%.15g</c>, clacks §8.6). Integers are exact while they fit Perl's IV/UV range (-2^63 .. 2^64-1);
/// anything else is an IEEE double.
/// </summary>
public static class PerlNumber
{
    private static readonly Int128 MinInteger = long.MinValue;
    private static readonly Int128 MaxInteger = ulong.MaxValue;

    /// <summary>
    /// New value of INCREMENT (<paramref name="negate"/> false) or DECREMENT: <paramref name="old"/> counts
    /// only when it is live data that looks like a number as a whole; <paramref name="step"/> is numified
    /// from its longest numeric prefix (null = 1).
    /// </summary>
    public static string Apply(string? old, string? step, bool negate)
    {
        var left = old is not null && TryLooksLikeNumber(old, out var o) ? o : Value.Zero;
        var right = step is null ? Value.One : Numify(step);
        if (negate)
        {
            right = right.Negate();
        }

        if (left.IsInteger && right.IsInteger)
        {
            var sum = left.Integer + right.Integer;
            if (sum >= MinInteger && sum <= MaxInteger)
            {
                return sum.ToString(CultureInfo.InvariantCulture);
            }
        }

        return FormatDouble(left.AsDouble + right.AsDouble);
    }

    /// <summary>Formats like Perl's default number output (<c>%.15g</c>): <c>0.3</c>, <c>1e+15</c>, <c>1e-05</c>, <c>Inf</c>, <c>NaN</c>.</summary>
    public static string FormatDouble(double d)
    {
        if (double.IsNaN(d))
        {
            return "NaN";
        }

        if (double.IsInfinity(d))
        {
            return d > 0 ? "Inf" : "-Inf";
        }

        if (d == 0)
        {
            return "0";
        }

        var e = d.ToString("E14", CultureInfo.InvariantCulture); // d.dddddddddddddddE+xxx, 15 significant digits
        var ePos = e.IndexOf('E');
        var exponent = int.Parse(e.AsSpan(ePos + 1), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
        if (exponent < -4 || exponent >= 15)
        {
            var mantissa = TrimZeros(e[..ePos]);
            var sign = exponent < 0 ? '-' : '+';
            var abs = Math.Abs(exponent);
            return $"{mantissa}e{sign}{(abs < 10 ? "0" : string.Empty)}{abs}";
        }

        return TrimZeros(d.ToString("F" + (14 - exponent).ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture));
    }

    /// <summary>Formats a Unix timestamp the way the reference prints it (clacks §8.6).</summary>
    public static string FormatTime(double seconds) => FormatDouble(seconds);

    /// <summary>Parses a timestamp field leniently (any decimal/integer form; junk counts as 0 like Perl).</summary>
    public static double ParseTime(string text) => Numify(text).AsDouble;

    /// <summary>Perl numification: longest numeric prefix after leading whitespace; none gives 0.</summary>
    public static Value Numify(string text)
    {
        var span = text.AsSpan().TrimStart(" \t\n\r\f\v");
        var length = ScanNumber(span, out var isInteger, out var special);
        if (special is not null)
        {
            return special.Value;
        }

        return length == 0 ? Value.Zero : Parse(span[..length], isInteger);
    }

    /// <summary>Perl's <c>looks_like_number</c>: the whole string (whitespace around allowed) is a number, or "0 but true".</summary>
    public static bool TryLooksLikeNumber(string text, out Value value)
    {
        value = Value.Zero;
        if (text == "0 but true")
        {
            return true;
        }

        var span = text.AsSpan().TrimStart(" \t\n\r\f\v");
        var length = ScanNumber(span, out var isInteger, out var special);
        if (length == 0 || !span[length..].Trim(" \t\n\r\f\v").IsEmpty)
        {
            return false;
        }

        value = special ?? Parse(span[..length], isInteger);
        return true;
    }

    private static Value Parse(ReadOnlySpan<char> number, bool isInteger)
    {
        if (isInteger && Int128.TryParse(number, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var i)
            && i >= MinInteger && i <= MaxInteger)
        {
            return Value.FromInteger(i);
        }

        return Value.FromDouble(double.Parse(number, NumberStyles.Float, CultureInfo.InvariantCulture));
    }

    /// <summary>Length of the numeric prefix <c>[+-](digits[.digits]|.digits)[e[+-]digits]</c>, or Inf/NaN.</summary>
    private static int ScanNumber(ReadOnlySpan<char> s, out bool isInteger, out Value? special)
    {
        isInteger = true;
        special = null;
        var i = 0;
        var negative = false;
        if (i < s.Length && s[i] is '+' or '-')
        {
            negative = s[i] == '-';
            i++;
        }

        var rest = s[i..];
        if (rest.StartsWith("inf", StringComparison.OrdinalIgnoreCase))
        {
            special = Value.FromDouble(negative ? double.NegativeInfinity : double.PositiveInfinity);
            return i + (rest.StartsWith("infinity", StringComparison.OrdinalIgnoreCase) ? 8 : 3);
        }

        if (rest.StartsWith("nan", StringComparison.OrdinalIgnoreCase))
        {
            special = Value.FromDouble(double.NaN);
            return i + 3;
        }

        var digits = 0;
        while (i < s.Length && char.IsAsciiDigit(s[i]))
        {
            i++;
            digits++;
        }

        if (i < s.Length && s[i] == '.')
        {
            var fraction = 0;
            var j = i + 1;
            while (j < s.Length && char.IsAsciiDigit(s[j]))
            {
                j++;
                fraction++;
            }

            if (digits + fraction > 0)
            {
                isInteger = false;
                i = j;
                digits += fraction;
            }
        }

        if (digits == 0)
        {
            return 0;
        }

        if (i < s.Length && s[i] is 'e' or 'E')
        {
            var j = i + 1;
            if (j < s.Length && s[j] is '+' or '-')
            {
                j++;
            }

            var expDigits = 0;
            while (j < s.Length && char.IsAsciiDigit(s[j]))
            {
                j++;
                expDigits++;
            }

            if (expDigits > 0)
            {
                isInteger = false;
                i = j;
            }
        }

        return i;
    }

    private static string TrimZeros(string s)
    {
        if (!s.Contains('.'))
        {
            return s;
        }

        s = s.TrimEnd('0');
        return s.EndsWith('.') ? s[..^1] : s;
    }

    /// <summary>A Perl scalar's numeric value: an exact integer (IV/UV range) or a double (NV).</summary>
    public readonly record struct Value(bool IsInteger, Int128 Integer, double Double)
    {
        /// <summary>0 (integer).</summary>
        public static Value Zero => new(true, 0, 0);

        /// <summary>1 (integer).</summary>
        public static Value One => new(true, 1, 1);

        /// <summary>An integer value.</summary>
        public static Value FromInteger(Int128 i) => new(true, i, (double)i);

        /// <summary>A double value.</summary>
        public static Value FromDouble(double d) => new(false, 0, d);

        /// <summary>The value as a double.</summary>
        public double AsDouble => IsInteger ? (double)Integer : Double;

        /// <summary>The negated value (integer negation stays exact).</summary>
        public Value Negate() => IsInteger ? FromInteger(-Integer) : FromDouble(-Double);
    }
}
