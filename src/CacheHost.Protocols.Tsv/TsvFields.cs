namespace CacheHost.Protocols.Tsv;

/// <summary>
/// Splits a line on TAB, the only separator (daemonproxy spec 3.1). Empty fields are kept; no quoting or
/// escaping exists. Allocation-free: enumerate with <c>foreach</c> or take fields by index.
/// </summary>
public readonly ref struct TsvFields
{
    private readonly ReadOnlySpan<byte> _line;

    /// <summary>Wraps a line (without its LF).</summary>
    public TsvFields(ReadOnlySpan<byte> line)
    {
        _line = line;
    }

    /// <summary>The first field: the command or event name.</summary>
    public ReadOnlySpan<byte> Name
    {
        get
        {
            var tab = _line.IndexOf((byte)'\t');
            return tab < 0 ? _line : _line[..tab];
        }
    }

    /// <summary>Everything after the first TAB (empty when there is none).</summary>
    public ReadOnlySpan<byte> Arguments
    {
        get
        {
            var tab = _line.IndexOf((byte)'\t');
            return tab < 0 ? [] : _line[(tab + 1)..];
        }
    }

    /// <summary>Number of fields (a line without TAB has one).</summary>
    public int Count => _line.Count((byte)'\t') + 1;

    /// <summary>Field <paramref name="index"/>, or false when the line has fewer fields.</summary>
    public bool TryGet(int index, out ReadOnlySpan<byte> field)
    {
        var rest = _line;
        for (var i = 0; i < index; i++)
        {
            var tab = rest.IndexOf((byte)'\t');
            if (tab < 0)
            {
                field = default;
                return false;
            }

            rest = rest[(tab + 1)..];
        }

        var end = rest.IndexOf((byte)'\t');
        field = end < 0 ? rest : rest[..end];
        return true;
    }

    /// <summary>Enumerates the fields.</summary>
    public Enumerator GetEnumerator() => new(_line);

    /// <summary>Field enumerator.</summary>
    public ref struct Enumerator
    {
        private ReadOnlySpan<byte> _rest;
        private bool _done;

        internal Enumerator(ReadOnlySpan<byte> line)
        {
            _rest = line;
            _done = false;
            Current = default;
        }

        /// <summary>The current field.</summary>
        public ReadOnlySpan<byte> Current { get; private set; }

        /// <summary>Advances to the next field.</summary>
        public bool MoveNext()
        {
            if (_done)
            {
                return false;
            }

            var tab = _rest.IndexOf((byte)'\t');
            if (tab < 0)
            {
                Current = _rest;
                _done = true;
                return true;
            }

            Current = _rest[..tab];
            _rest = _rest[(tab + 1)..];
            return true;
        }
    }
}
