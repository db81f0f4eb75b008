namespace PyroMcp.GuestAgent;

/// <summary>Finds a virtio-serial port by name. Without udev there is no /dev/virtio-ports link, so sysfs is the map.</summary>
internal static class VirtioPort
{
    internal static async Task<Stream> OpenAsync(string name, TimeSpan wait)
    {
        var deadline = DateTime.UtcNow + wait;
        while (true)
        {
            foreach (var dir in Directory.Exists("/sys/class/virtio-ports") ? Directory.GetDirectories("/sys/class/virtio-ports") : [])
            {
                var nameFile = Path.Combine(dir, "name");
                if (File.Exists(nameFile) && File.ReadAllText(nameFile).Trim() == name)
                {
                    var device = "/dev/" + Path.GetFileName(dir);
                    if (File.Exists(device))
                    {
                        // One descriptor for both directions: a virtio port can be opened only once.
                        var handle = File.OpenHandle(device, FileMode.Open, FileAccess.ReadWrite);
                        return new FileStream(handle, FileAccess.ReadWrite, bufferSize: 0);
                    }
                }
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new IOException($"virtio port {name} did not appear");
            }

            await Task.Delay(20);
        }
    }
}
