import DiskWatch
import Foundation
import Platform
import Replication

/// Every filesystem guardian depends on — those holding the databases, the
/// file replicas, the logs it rotates, its state directory and the ballast —
/// at the levels of `disk:` (warn / critical / emergency), and the ballast.
/// Blocking (statvfs); run on `BlockingPool`.
enum DiskChecks {
    static let group = "disk"

    static func paths(_ config: GuardianConfig) -> [String] {
        var paths: [String] = []
        for db in config.dbs {
            paths.append(db.path)
            for r in db.replication.replicas {
                if case .file(let p) = r.target { paths.append(p) }
            }
        }
        paths += config.disk.paths
        for log in config.disk.logs { paths += log.paths.map(SandboxPaths.globRoot) }
        paths.append(config.stateDir)
        if let b = config.disk.ballast { paths.append(b.path) }
        var seen: Set<String> = []
        return paths.filter { seen.insert($0).inserted }
    }

    static func run(_ config: GuardianConfig) -> [DoctorReport.Check] {
        var out: [DoctorReport.Check] = []
        let d = config.disk
        let (mounts, failures) = DiskUsageSnapshot.take(paths: paths(config), config: d)
        for m in mounts {
            let holds = m.paths.count <= 3 ? m.paths.joined(separator: ", ") : m.paths.prefix(3).joined(separator: ", ") + " and \(m.paths.count - 3) more"
            var text = "\(m.mountPoint): \(String(format: "%.1f", m.usedPercent))% used, \(Units.formatBytes(m.availableBytes)) free of \(Units.formatBytes(m.totalBytes))"
            if let i = m.inodesPercent { text += ", inodes \(String(format: "%.1f", i))%" }
            text += " (holds \(holds))"
            let fix = "free space on \(m.mountPoint): `guardian rotate` rotates the configured logs now; `du -xh \(m.mountPoint) | sort -h | tail` finds what grew; disk: cleanup: rules delete old files automatically"
            switch m.level {
            case .normal: out.append(.ok(group, "disk.level", text))
            case .warn: out.append(.warn(group, "disk.level", text + ": above warn \(Int(d.warn))%", fix: fix))
            case .critical: out.append(.fail(group, "disk.level", text + ": above critical \(Int(d.critical))%", fix: fix))
            case .emergency: out.append(.fail(group, "disk.level", text + ": above emergency \(Int(d.emergency))%", fix: fix))
            }
        }
        for f in failures {
            out.append(.warn(group, "disk.level", "cannot measure the filesystem of \(f.path): \(f.error)",
                fix: "check that the path exists and that \(Identity.current.user) may search its directories"))
        }
        out += headroom(config, mounts: mounts)
        if let b = d.ballast {
            let mount = mounts.first { $0.paths.contains(b.path) }
            switch DiskUsageSnapshot.ballast(b) {
            case .present(let allocated):
                out.append(.ok(group, "disk.ballast", "ballast \(b.path) present (\(Units.formatBytes(allocated)) held in reserve)"))
            case .absent:
                if let mount, mount.level == .emergency {
                    out.append(.warn(group, "disk.ballast", "ballast \(b.path) is released (the disk is at the emergency level)",
                        fix: "free space on \(mount.mountPoint); guardian creates the ballast again once usage is back below warn"))
                } else {
                    out.append(.warn(group, "disk.ballast", "ballast \(b.path) is not there",
                        fix: "the running daemon creates it (\(Units.formatBytes(b.size))) while usage stays below warn with it; start guardian, or free space if it does not fit"))
                }
            case .partial(let allocated):
                out.append(.warn(group, "disk.ballast", "ballast \(b.path) holds \(Units.formatBytes(allocated)) of \(Units.formatBytes(b.size))",
                    fix: "the daemon completes it once the disk has room below warn; see `guardian status`"))
            case .foreign(let why):
                out.append(.fail(group, "disk.ballast", "ballast path: \(why); guardian will not touch it",
                    fix: "choose another disk: ballast: path:, or move that file away"))
            }
        }
        return out
    }

    /// Room for each database's WAL to grow to `max-wal-size` and to be
    /// checkpointed (the checkpoint may grow the database file by as much):
    /// the free space now, the space left at the emergency level, and the
    /// ballast on that filesystem should each hold it.
    static func headroom(_ config: GuardianConfig, mounts: [MountStatus]) -> [DoctorReport.Check] {
        var out: [DoctorReport.Check] = []
        let d = config.disk
        for m in mounts {
            let dbs = config.dbs.filter { m.paths.contains($0.path) }
            guard !dbs.isEmpty else { continue }
            let need = dbs.reduce(Int64(0)) { $0 + GuardianConfig.headroom(for: $1) }
            let names = dbs.map(\.path).joined(separator: ", ")
            let atEmergency = Int64(Double(m.totalBytes) * (100 - d.emergency) / 100)
            var problems: [String] = []
            if m.availableBytes < need { problems.append("only \(Units.formatBytes(m.availableBytes)) free now") }
            if atEmergency < need { problems.append("only \(Units.formatBytes(atEmergency)) left at the emergency level \(Int(d.emergency))%") }
            if let b = d.ballast, m.paths.contains(b.path), b.size < need { problems.append("the ballast is \(Units.formatBytes(b.size))") }
            let text = "\(m.mountPoint): \(names) may need \(Units.formatBytes(need)) (the WAL growing to max-wal-size, and its checkpoint into the database)"
            if problems.isEmpty {
                out.append(.ok(group, "disk.headroom", text))
            } else {
                out.append(.warn(group, "disk.headroom", text + "; " + problems.joined(separator: ", "),
                    fix: "lower disk: emergency: (or warn/critical) so that more stays free, make the ballast at least \(Units.formatBytes(need)), lower max-wal-size, or give the database more room"))
            }
        }
        return out
    }
}
