import Foundation
import Testing
@testable import DiskWatch
import Platform

/// `guardian rotate` as an operator runs it: the built binary, a config file.
@Suite struct DiskRotateCommandTests {
    static func guardian(_ args: [String]) throws -> (code: Int32?, out: String, err: String) {
        let r = try Subprocess.runBlocking([TestSupport.guardianBinary] + args, timeout: .seconds(60))
        return (r.exitCode, String(decoding: r.stdout, as: UTF8.self), String(decoding: r.stderr, as: UTF8.self))
    }

    @Test func dryRunThenRotate() throws {
        let dir = try DiskKit.tempDir("cli")
        defer { DiskKit.remove(dir) }
        mkdir(dir + "/logs", 0o755)
        DiskKit.write(dir + "/logs/app.log", "live\n")
        DiskKit.write(dir + "/logs/app.log.1", "older\n")
        DiskKit.write(dir + "/guardian.yml", """
            state-dir: \(dir)/state
            disk:
              logs:
                - paths: [\(dir)/logs/*.log]
                  rotate: 1
                  compress: true
            """)
        let dry = try Self.guardian(["rotate", "--config", dir + "/guardian.yml", "--dry-run", "--force"])
        #expect(dry.code == 0, "\(dry.err)")
        #expect(dry.out.contains("would delete \(dir)/logs/app.log.1 (rotate 1)"))
        #expect(dry.out.contains("would rotate \(dir)/logs/app.log -> \(dir)/logs/app.log.1"))
        #expect(DiskKit.names(dir + "/logs") == ["app.log", "app.log.1"])
        #expect(!FileManager.default.fileExists(atPath: dir + "/state/disk-rotation.json"))

        // Not forced: 5 bytes are below the default 1 MiB, nothing to do.
        let lazy = try Self.guardian(["rotate", "--config", dir + "/guardian.yml"])
        #expect(lazy.code == 0)
        #expect(lazy.out.contains("nothing to rotate"))

        let real = try Self.guardian(["rotate", "--config", dir + "/guardian.yml", "--force"])
        #expect(real.code == 0, "\(real.err)")
        #expect(real.out.contains("rotated \(dir)/logs/app.log -> \(dir)/logs/app.log.1"))
        #expect(real.out.contains("compressed \(dir)/logs/app.log.1 -> app.log.1.gz"))
        #expect(DiskKit.names(dir + "/logs") == ["app.log", "app.log.1.gz"])
        #expect(try RotationState.load(from: dir + "/state/disk-rotation.json").logs[dir + "/logs/app.log"] != nil)
    }

    @Test func refusalsAndWarningsReachTheOperator() throws {
        let dir = try DiskKit.tempDir("cli-bad")
        defer { DiskKit.remove(dir) }
        DiskKit.write(dir + "/app.db", "")
        DiskKit.write(dir + "/guardian.yml", """
            state-dir: \(dir)/state
            dbs:
              - path: \(dir)/app.db
            disk:
              logs:
                - paths: [\(dir)/app.*]
                - paths: [\(dir)/missing/*.log]
            """)
        let r = try Self.guardian(["rotate", "--config", dir + "/guardian.yml", "--force"])
        #expect(r.code == 1)
        #expect(r.err.contains("error: disk.logs[0].paths[0]: \"\(dir)/app.*\" matches the database file \(dir)/app.db"))
        #expect(r.out.contains("refused \(dir)/app.db (a database file; guardian never touches it)"))
        #expect(r.out.contains("skipped \(dir)/missing/*.log (matches no file; add missingok if that is expected)"))
        #expect(DiskKit.names(dir) == ["app.db", "guardian.yml", "state"])

        DiskKit.write(dir + "/broken.yml", "disk:\n  logs:\n    - paths: [\(dir)/x.log]\n      rotate: many\n")
        let broken = try Self.guardian(["rotate", "--config", dir + "/broken.yml"])
        #expect(broken.code == 2)
        #expect(broken.err.contains("broken.yml:4: disk.logs[0].rotate: \"many\" is not a whole number"))
    }

    /// logrotate exits 1 for a log missing without missingok, and still
    /// rotates the others; so does `guardian rotate`.
    @Test func aMissingLogWithoutMissingokIsAnErrorExitLikeLogrotate() throws {
        let dir = try DiskKit.tempDir("cli-missing")
        defer { DiskKit.remove(dir) }
        mkdir(dir + "/logs", 0o755)
        mkdir(dir + "/lr", 0o755)
        DiskKit.write(dir + "/logs/app.log", "live\n")
        DiskKit.write(dir + "/lr/app.log", "live\n")
        let lr = try DiskKit.logrotate("\(dir)/lr/app.log \(dir)/lr/gone.log {\nrotate 1\n}\n", in: dir, force: true)
        #expect(lr.exitCode == 1)
        #expect(DiskKit.names(dir + "/lr") == ["app.log.1"])

        func config(missingOK: Bool) -> String {
            """
            state-dir: \(dir)/state
            disk:
              logs:
                - paths: [\(dir)/logs/app.log, \(dir)/logs/gone.log]
                  rotate: 1
                  missingok: \(missingOK)
            """
        }
        DiskKit.write(dir + "/guardian.yml", config(missingOK: false))
        let r = try Self.guardian(["rotate", "--config", dir + "/guardian.yml", "--force"])
        #expect(r.code == 1, "\(r.out)\(r.err)")
        #expect(r.out.contains("skipped \(dir)/logs/gone.log (matches no file; add missingok if that is expected)"))
        #expect(DiskKit.names(dir + "/logs") == ["app.log", "app.log.1"])

        DiskKit.write(dir + "/guardian.yml", config(missingOK: true))
        let ok = try Self.guardian(["rotate", "--config", dir + "/guardian.yml", "--force"])
        #expect(ok.code == 0, "\(ok.out)\(ok.err)")
    }
}
