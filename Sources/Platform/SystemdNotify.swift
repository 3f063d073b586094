import CSystemd
import Foundation

/// The sd_notify protocol: READY, STATUS, WATCHDOG, RELOADING, STOPPING.
/// Without `NOTIFY_SOCKET` every call is a no-op.
public struct SystemdNotifier: Sendable {
    public init() {}

    @discardableResult
    public func notify(_ state: String) -> Bool {
        sd_notify(0, state) > 0
    }

    public func ready(status: String) { notify("READY=1\nSTATUS=\(status)") }
    public func status(_ text: String) { notify("STATUS=\(text)") }
    public func watchdog() { notify("WATCHDOG=1") }
    public func stopping(status: String) { notify("STOPPING=1\nSTATUS=\(status)") }

    /// RELOADING=1 must carry MONOTONIC_USEC for Type=notify-reload units.
    public func reloading() {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        let usec = UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1000
        notify("RELOADING=1\nMONOTONIC_USEC=\(usec)")
    }

    /// The watchdog interval systemd expects pings within, if enabled for this process.
    public var watchdogInterval: Duration? {
        var usec: UInt64 = 0
        guard sd_watchdog_enabled(0, &usec) > 0, usec > 0 else { return nil }
        return .microseconds(Int64(usec))
    }
}
