using System.IO.Pipelines;

namespace PyroMcp.TestKit;

/// <summary>Two in-memory streams joined back to back: what one writes, the other reads.</summary>
internal sealed class DuplexPipe
{
    private readonly Pipe _toGuest = new();
    private readonly Pipe _toHost = new();

    internal DuplexPipe()
    {
        Host = new Joined(_toHost.Reader.AsStream(), _toGuest.Writer.AsStream());
        Guest = new Joined(_toGuest.Reader.AsStream(), _toHost.Writer.AsStream());
    }

    internal Stream Host { get; }

    internal Stream Guest { get; }

    private sealed class Joined(Stream read, Stream write) : Stream
    {
        public override bool CanRead => true;
        public override bool CanWrite => true;
        public override bool CanSeek => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override int Read(byte[] buffer, int offset, int count) => read.Read(buffer, offset, count);
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => read.ReadAsync(buffer, cancellationToken);
        public override void Write(byte[] buffer, int offset, int count) => write.Write(buffer, offset, count);
        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => write.WriteAsync(buffer, cancellationToken);
        public override void Flush() => write.Flush();
        public override Task FlushAsync(CancellationToken cancellationToken) => write.FlushAsync(cancellationToken);
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                read.Dispose();
                write.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}
