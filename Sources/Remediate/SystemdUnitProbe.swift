import CSystemd
import Foundation
import Platform

/// Asks systemd about a unit without touching it, for `guardian doctor`:
/// `org.freedesktop.systemd1.Manager.LoadUnit(name)` and the unit's
/// `LoadState`/`ActiveState`. `LoadState=not-found` means the unit does not
/// exist (a typo in `unit:`, or the application is not installed).
public enum SystemdUnitProbe {
    public enum Outcome: Sendable, Equatable {
        /// No D-Bus connection (no system bus on this host, or not allowed).
        case noBus(String)
        /// A bus answered, but systemd is not on it.
        case noSystemd(String)
        /// systemd answered this call with an error.
        case failed(String)
        case unit(loadState: String, activeState: String)
    }

    /// Whether the host was booted with systemd (`sd_booted`: /run/systemd/system exists).
    public static var bootedWithSystemd: Bool { sd_booted() > 0 }

    /// nil `busAddress` = the system bus (`DBUS_SYSTEM_BUS_ADDRESS` is honoured by sd-bus).
    public static func check(unit: String, busAddress: String? = nil) async -> Outcome {
        await RemediatePool.shared.run {
            let bus: SDBus
            do {
                bus = try SDBus(address: busAddress)
            } catch {
                return .noBus("\(error)")
            }
            do {
                let path = try bus.loadUnit(unit)
                let load = try bus.property(path, "LoadState")
                let active = (try? bus.property(path, "ActiveState")) ?? "unknown"
                return .unit(loadState: load, activeState: active)
            } catch {
                let text = "\(error)"
                // No owner of org.freedesktop.systemd1 on this bus.
                for name in ["org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner"] where text.contains(name) {
                    return .noSystemd(text)
                }
                return .failed(text)
            }
        }
    }
}
