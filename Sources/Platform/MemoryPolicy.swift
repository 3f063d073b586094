import CLinux
import CSQLite
import Foundation

/// How guardian's heap gives memory back (glibc malloc). Measured on the
/// 100k-transaction burst (issue 13): the heap grew to 23 MB of private
/// memory in one thread arena and kept all of it after the burst, because
/// glibc trims an arena only from its top and freed chunks in the middle stay
/// resident. So:
/// - at most two arenas (threads share them instead of each growing its own),
/// - fixed mmap (256 KiB) and trim (1 MiB) thresholds: glibc otherwise raises
///   them after the first large free, and later large buffers then stay in
///   the heap for good; at or above 256 KiB a buffer is its own mapping and
///   goes back to the kernel when freed,
/// - a trimmer thread that calls `malloc_trim(0)` (which also releases free
///   pages in the middle of the heap) once the heap in use has fallen by more
///   than a megabyte below its peak and has stopped changing: after a burst,
///   not during one. It samples `mallinfo2()` once a second,
/// - SQLite's connections allocate page-cache memory as they read pages
///   instead of 20 pages (~88 KB) up front each (issue 14: three connections
///   per database).
public enum MemoryPolicy {
    /// Applies the settings and starts the trimmer (once; idempotent). Call
    /// first thing in `main`, before other threads allocate.
    public static func apply() {
        _ = started
    }

    private static let started: Bool = {
        // SQLite: page-cache memory as pages are read, not 20 pages up front
        // per connection (~88 KB; three connections per database).
        _ = csqlite_no_bulk_page_cache()
        _ = mallopt(clinux_M_ARENA_MAX, 2)
        _ = mallopt(clinux_M_MMAP_THRESHOLD, 256 << 10)
        _ = mallopt(clinux_M_TRIM_THRESHOLD, 1 << 20)
        let thread = Thread {
            var trimmer = Trimmer()
            trimmer.run()
        }
        thread.name = "guardian-trim"
        thread.stackSize = 256 << 10
        thread.start()
        return true
    }()

    /// Bytes the heap has handed out (all arenas; mmapped chunks not included).
    public static var heapInUse: Int { Int(mallinfo2().uordblks) }

    /// Gives free heap pages back to the kernel now.
    public static func trim() { _ = malloc_trim(0) }

    /// Decides when to trim from successive samples of the heap in use.
    struct Trimmer {
        /// How far below its peak the heap must have fallen.
        static let slack = 1 << 20
        var peak = 0
        var previous = 0

        /// Whether to trim after a sample of `inUse` bytes (and resets the peak when so).
        mutating func shouldTrim(inUse: Int) -> Bool {
            defer { previous = inUse }
            peak = max(peak, inUse)
            guard peak - inUse > Self.slack, abs(inUse - previous) < Self.slack / 4 else { return false }
            peak = inUse
            return true
        }

        /// Whether the heap is quiet: unchanged since the last sample and
        /// not above its trimmed level. `mallinfo2` walks every free chunk
        /// (with a thousand databases' heap, a sixth of guardian's idle CPU
        /// at one sample a second), so a quiet heap is sampled every 5 s;
        /// one that moves, once a second (a burst's end is still trimmed
        /// within a second or two of settling).
        var quiet: Bool { peak - previous < Self.slack / 4 }

        mutating func run() {
            while true {
                Thread.sleep(forTimeInterval: 1)
                let inUse = MemoryPolicy.heapInUse
                let moved = abs(inUse - previous) >= Self.slack / 4
                if shouldTrim(inUse: inUse) { MemoryPolicy.trim() }
                if !moved, quiet { Thread.sleep(forTimeInterval: 4) }
            }
        }
    }
}
