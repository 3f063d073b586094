import ArgumentParser
import DiskWatch
import Foundation
import Platform
import Remediate
import Replication

struct CheckConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate the configuration and print it as guardian understands it (secrets masked)."
    )

    @OptionGroup var options: ConfigOptions

    func run() throws {
        let config = try options.load()
        print(config.effectiveDescription, terminator: "")
    }
}

extension GuardianConfig {
    /// The configuration as parsed, with every default filled in, in the YAML
    /// shape of the file. Secrets are printed as `******`.
    var effectiveDescription: String {
        var out = "# effective configuration of \(file)\n"
        func d(_ v: Duration) -> String { Units.formatDuration(v) }
        func q(_ s: String) -> String { "\"\(s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\""))\"" }
        out += "state-dir: \(q(stateDir))\n"
        out += "status:\n  socket: \(q(status.socket))\n  metrics: \(status.metrics.map(q) ?? "off")\n"
        out += "log:\n  level: \(log.level)\n  target: \(log.target.rawValue)\n"
        out += "dbs:\n"
        if dbs.isEmpty, directories.isEmpty { out += "  []\n" }
        for (db, spec) in dbs.map({ ($0, DirectorySpec?.none) }) + directories.map({ ($0.template, Optional($0.spec)) }) {
            let r = db.replication
            if let spec {
                // Each database's replica path is the one below plus its path relative to dir.
                out += "  - dir: \(q(spec.dir))\n    pattern: \(q(spec.pattern))\n    recursive: \(spec.recursive)\n    watch: \(spec.watch)\n"
            } else {
                out += "  - path: \(q(db.path))\n"
            }
            out += "    monitor-interval: \(d(r.monitorInterval))\n"
            out += "    checkpoint-size: \(r.checkpointSize)\n"
            out += "    max-wal-size: \(r.maxWALSize)\n"
            out += "    snapshot-interval: \(d(r.snapshotInterval))\n"
            out += "    compaction-levels: [\(r.compactionLevels.map(d).joined(separator: ", "))]\n"
            out += "    replicas:\n"
            if r.replicas.isEmpty { out += "      []\n" }
            for replica in r.replicas {
                out += "      - name: \(q(replica.name))\n"
                out += "        type: \(replica.target.typeName)\n"
                switch replica.target {
                case .file(let path):
                    out += "        path: \(q(path))\n"
                case .s3(let s3):
                    out += "        bucket: \(q(s3.bucket))\n        path: \(q(s3.path))\n        region: \(q(s3.region))\n"
                    out += "        endpoint: \(s3.endpoint.map(q) ?? "default")\n        force-path-style: \(s3.forcePathStyle)\n"
                    out += "        access-key-id: \(s3.accessKeyID.map { q(Redactor.maskKeyID($0)) } ?? "unset")\n"
                    out += "        secret-access-key: \(s3.secretAccessKey.map { "\($0)" } ?? "unset")\n"
                    out += "        skip-verify: \(s3.skipVerify)\n"
                case .sftp(let sftp):
                    out += "        host: \(q("\(sftp.host):\(sftp.port)"))\n        user: \(q(sftp.user))\n        path: \(q(sftp.path))\n"
                    out += "        key-path: \(sftp.keyPath.map(q) ?? "unset")\n        known-hosts: \(sftp.knownHosts.map(q) ?? "unset")\n"
                    out += "        password: \(sftp.password.map { "\($0)" } ?? "unset")\n"
                }
                out += "        sync-interval: \(d(replica.syncInterval))\n"
                out += "        retention: \(d(replica.retention))\n"
            }
            let m = db.remediation
            out += "    remediate: \(m.mode.rawValue)\n"
            out += "    unit: \(m.unit.map(q) ?? "none")\n"
            if !m.stopCommand.isEmpty { out += "    stop-command: [\(m.stopCommand.map(q).joined(separator: ", "))]\n" }
            if !m.startCommand.isEmpty { out += "    start-command: [\(m.startCommand.map(q).joined(separator: ", "))]\n" }
            out += "    integrity-interval: \(d(m.integrityInterval))\n"
            out += "    integrity-budget: \(d(m.integrityBudget))\n"
            out += "    health-interval: \(d(m.checkpointInterval))\n"
            out += "    cooldown: \(d(m.cooldown))\n"
            if let drill = db.drill {
                switch drill.schedule {
                case .every(let interval): out += "    drill:\n      interval: \(d(interval))\n"
                case .weekly: out += "    drill:\n      weekly: \(q(drill.schedule.configValue))\n"
                }
                out += "      budget: \(d(drill.budget))\n"
                if let s = drill.scratchDir { out += "      scratch-dir: \(q(s))\n" }
                if let r = drill.replica { out += "      replica: \(q(r))\n" }
                if spec != nil { out += "      sample: \(drill.sample ?? GuardianConfig.Directory.defaultDrillSample)\n" }
                if !drill.queries.isEmpty { out += "      queries:\n" }
                for query in drill.queries {
                    out += "        - sql: \(q(query.sql))\n"
                    if let min = query.min { out += "          min: \(min)\n" }
                    if let p = query.withinLivePercent { out += "          within-live: \(p)%\n" }
                }
            }
        }
        let k = disk
        out += "disk:\n  interval: \(d(k.interval))\n  warn: \(k.warn)%\n  critical: \(k.critical)%\n  emergency: \(k.emergency)%\n"
        out += "  paths: [\(k.paths.map(q).joined(separator: ", "))]\n"
        if let b = k.ballast { out += "  ballast:\n    path: \(q(b.path))\n    size: \(b.size)\n" }
        if !k.logs.isEmpty {
            out += "  logs:\n"
            for (i, l) in k.logs.enumerated() {
                out += Self.describeLogRule(l, origin: i < logOrigins.count ? logOrigins[i] : nil)
            }
        }
        out += "alerts:\n"
        if alerts.isEmpty { out += "  []\n" }
        for a in alerts {
            out += "  - type: \(a.kind.rawValue)\n    url: \(a.url)\n    min-severity: \(a.minSeverity)\n"
            if let key = a.key { out += "    key: \(key)\n" }
        }
        return out
    }
}
