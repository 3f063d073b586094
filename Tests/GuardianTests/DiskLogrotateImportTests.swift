import Foundation
import Testing
@testable import DiskWatch
@testable import guardian
@testable import Platform

/// The Debian packages' /etc/logrotate.d files under Tests/Fixtures (see its README).
private enum LogrotateFixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/logrotate.d/etc").path
    static var directory: String { root + "/logrotate.d" }
    static var conf: String { root + "/logrotate.conf" }
    static let names = [
        "alternatives", "apache2", "apt", "btmp", "cups-daemon", "dpkg", "exim4-base", "exim4-paniclog", "mariadb", "nginx",
        "postgresql-common", "rsyslog", "samba", "ufw", "unattended-upgrades", "wtmp",
    ]

    static func text(_ name: String) throws -> String {
        try String(contentsOfFile: directory + "/" + name, encoding: .utf8)
    }
}

private func importError(_ text: String, file: String = "/etc/logrotate.d/app") -> String? {
    do {
        _ = try LogrotateImport.parse(text, file: file)
        return nil
    } catch let e as ConfigError {
        return e.description
    } catch {
        return "\(error)"
    }
}

private func rules(_ text: String) throws -> [LogRotationConfig] {
    try LogrotateImport.parse(text, file: "/etc/logrotate.d/app").map(\.rule)
}

@Suite struct DiskLogrotateImportTests {
    // MARK: - The Debian packages' files

    @Test(arguments: LogrotateFixtures.names)
    func everyDebianFixtureImports(name: String) throws {
        let imported = try LogrotateImport.read(path: LogrotateFixtures.directory + "/" + name)
        #expect(!imported.isEmpty)
        for i in imported {
            #expect(i.file == LogrotateFixtures.directory + "/" + name)
            #expect(i.rule.paths.allSatisfy { $0.hasPrefix("/var/") })
            // logrotate's default is nosharedscripts; guardian's YAML default is sharedscripts.
            #expect(i.rule.sharedScripts == (try LogrotateFixtures.text(name)).contains("sharedscripts"))
        }
    }

    @Test func nginxMapsEveryDirective() throws {
        let imported = try LogrotateImport.read(path: LogrotateFixtures.directory + "/nginx")
        let r = try #require(imported.first?.rule)
        #expect(imported.count == 1 && imported[0].line == 1)
        #expect(r.paths == ["/var/log/nginx/*.log"])
        #expect(r.frequency == .daily && r.size == nil)
        #expect(r.rotate == 14)
        #expect(r.compress && r.delayCompress && r.missingOK && r.notIfEmpty && r.sharedScripts)
        #expect(r.create && r.createMode == 0o640 && r.createOwner == "www-data" && r.createGroup == "adm")
        guard case .shell(let pre) = r.preRotate else {
            Issue.record("prerotate is \(String(describing: r.preRotate))")
            return
        }
        // The text between the keyword and the endscript line, as logrotate keeps it.
        #expect(pre == "\n\t\tif [ -d /etc/logrotate.d/httpd-prerotate ]; then \\\n\t\t\trun-parts /etc/logrotate.d/httpd-prerotate; \\\n\t\tfi \\\n")
        #expect(r.postRotate == .shell("\n\t\tinvoke-rc.d nginx rotate >/dev/null 2>&1\n"))
    }

    @Test func debianFixturesMapTheirCriteriaAndOptions() throws {
        func one(_ name: String) throws -> [LogRotationConfig] {
            try LogrotateImport.read(path: LogrotateFixtures.directory + "/" + name).map(\.rule)
        }
        // postgresql-common: su root root, copytruncate (create has no effect with it).
        let pg = try #require(try one("postgresql-common").first)
        #expect(pg.suRoot && pg.copyTruncate && !pg.create && pg.frequency == .weekly && pg.rotate == 10)
        // rsyslog: six paths over six lines, then `{` alone.
        let rs = try #require(try one("rsyslog").first)
        #expect(rs.paths == ["/var/log/syslog", "/var/log/mail.log", "/var/log/kern.log", "/var/log/auth.log", "/var/log/user.log", "/var/log/cron.log"])
        #expect(rs.rotate == 4 && !rs.create)
        // mariadb: comments everywhere, minsize/maxsize with M.
        let db = try #require(try one("mariadb").first)
        #expect(db.paths == ["/var/lib/mysql/mysqld.log", "/var/lib/mysql/mariadb.log", "/var/log/mysql/*.log"])
        #expect(db.minSize == 50 << 20 && db.maxSize == 500 << 20 && db.frequency == .monthly && db.rotate == 6)
        // exim4-paniclog: size 10M is the criterion; nocreate.
        let panic = try #require(try one("exim4-paniclog").first)
        #expect(panic.size == 10 << 20 && panic.frequency == nil && !panic.create)
        // samba: three stanzas, per-log scripts (nosharedscripts).
        let samba = try one("samba")
        #expect(samba.count == 3 && samba.allSatisfy { !$0.sharedScripts && { if case .shell = $0.postRotate { true } else { false } }($0) })
        // wtmp: create 0664 root utmp, minsize 1M.
        let wtmp = try #require(try one("wtmp").first)
        #expect(wtmp.createMode == 0o664 && wtmp.createGroup == "utmp" && wtmp.minSize == 1 << 20 && wtmp.rotate == 1)
        // alternatives: `create 644 root root` is octal like logrotate's %ho.
        #expect(try one("alternatives").first?.createMode == 0o644)
    }

    @Test func theWholeDirectoryImportsSkippingTabooNames() throws {
        let dir = try DiskKit.tempDir("lrdir")
        defer { DiskKit.remove(dir) }
        for name in LogrotateFixtures.names {
            DiskKit.write(dir + "/" + name, try LogrotateFixtures.text(name))
        }
        // What dpkg and editors leave behind: logrotate skips these names, so
        // their refused directives must not stop the import.
        for taboo in ["nginx.dpkg-old", "nginx.dpkg-dist", "app~", "app.bak", "app.rpmsave", "app.ucf-old", "app.swp"] {
            DiskKit.write(dir + "/" + taboo, "/var/log/other.log {\n  mail root@example.com\n}\n")
        }
        mkdir(dir + "/subdir", 0o755)
        let all = try LogrotateImport.read(path: dir)
        let single = try LogrotateFixtures.names.flatMap { try LogrotateImport.read(path: LogrotateFixtures.directory + "/" + $0) }
        #expect(all.map(\.rule) == single.map(\.rule))
        // In logrotate's order: byte order of the names.
        #expect(all.first?.file == dir + "/alternatives" && all.last?.file == dir + "/wtmp")
        // A name logrotate does read (a dot file is not taboo) is read.
        DiskKit.write(dir + "/.hidden", "/var/log/hidden.log {\n  yearly\n}\n")
        #expect(throws: ConfigError.self) { try LogrotateImport.read(path: dir) }
    }

    @Test func debianDefaultsComeFromLogrotateConf() throws {
        // Without defaults: logrotate's built-in ones (rotate 0, no create), as `logrotate FILE`.
        let bare = try #require(try LogrotateImport.read(path: LogrotateFixtures.directory + "/apt").first?.rule)
        #expect(bare.rotate == 12 && !bare.create)
        let dir = try DiskKit.tempDir("lrconf")
        defer { DiskKit.remove(dir) }
        DiskKit.write(dir + "/app", "/var/log/app.log {\n  missingok\n}\n")
        let plain = try #require(try LogrotateImport.read(path: dir + "/app").first?.rule)
        #expect(plain.rotate == 0 && !plain.create && plain.frequency == nil)
        // With Debian's /etc/logrotate.conf: weekly, rotate 4, create (its include is not followed).
        let debian = try #require(try LogrotateImport.read(path: dir + "/app", defaults: LogrotateFixtures.conf).first?.rule)
        #expect(debian.rotate == 4 && debian.create && debian.frequency == .weekly && debian.missingOK)
    }

    // MARK: - Syntax

    @Test func globalDirectivesApplyToLaterStanzasAndFiles() throws {
        let dir = try DiskKit.tempDir("lrglobal")
        defer { DiskKit.remove(dir) }
        DiskKit.write(dir + "/a", "/var/log/before.log {\n}\ncompress\nrotate 5\n/var/log/a.log {\n  nocompress\n}\n/var/log/a2.log {\n}\n")
        // Like logrotate, a later file of the same directory inherits a's globals.
        DiskKit.write(dir + "/b", "/var/log/b.log {\n}\n")
        let r = try LogrotateImport.read(path: dir).map(\.rule)
        #expect(r.map(\.paths) == [["/var/log/before.log"], ["/var/log/a.log"], ["/var/log/a2.log"], ["/var/log/b.log"]])
        #expect(r.map(\.compress) == [false, false, true, true])
        #expect(r.map(\.rotate) == [0, 5, 5, 5])
    }

    @Test func syntaxVariantsParseLikeLogrotate() throws {
        let r = try rules("""
            # comment
            "/var/log/my app.log" /var/log/x/*.log
            # a comment line inside the path list
            '/var/log/q.log' {
                rotate = 3
                compress delaycompress   missingok
                size 100k
                create root adm
                weekly 0
                dateext
                dateformat -%Y-%m-%d
                olddir /var/log/old
                createolddir 0750 root adm
                start 0
                extension .log
                minage 2
                maxage 30
                copy
                compresscmd /usr/bin/zstd
                compressoptions -T0 --long
                su 0 0
                firstaction
                    echo first
                endscript
                lastaction echo last
                endscript
            }
            /var/log/one.log { daily }
            /var/log/two.log {
                size 0x10
                rotate -1
                size 1G
            }
            """)
        #expect(r.count == 3)
        let a = r[0]
        #expect(a.paths == ["/var/log/my app.log", "/var/log/x/*.log", "/var/log/q.log"])
        #expect(a.rotate == 3 && a.compress && a.delayCompress && a.missingOK)
        // size, then weekly: the last criterion wins (logrotate's set_criterium).
        #expect(a.frequency == .weekly && a.size == nil)
        // create is read (owner and group only: the mode stays), but has no effect with copy.
        #expect(a.createOwner == nil && a.createMode == nil)
        let created = try #require(try rules("/var/log/a.log {\n  create 0600 nobody nogroup\n  create root adm\n}\n").first)
        #expect(created.createMode == 0o600 && created.createOwner == "root" && created.createGroup == "adm" && created.create)
        #expect(a.dateExt && a.dateFormat == "-%Y-%m-%d" && a.oldDir == "/var/log/old")
        #expect(a.createOldDir == LogRotationConfig.FileCreation(mode: 0o750, owner: "root", group: "adm"))
        #expect(a.start == 0 && a.fileExtension == ".log" && a.minAge == .seconds(2 * 86400) && a.maxAge == .seconds(30 * 86400))
        #expect(a.copy && !a.create)
        #expect(a.compressCommand == "/usr/bin/zstd" && a.compressExt == ".zst" && a.compressOptions == ["-T0", "--long"])
        #expect(a.suRoot && a.suUser == "0" && a.suGroup == "0")
        let su = try #require(try rules("/var/log/a.log {\n  su www-data adm\n}\n").first)
        #expect(su.suUser == "www-data" && su.suGroup == "adm")
        #expect(a.firstAction == .shell("\n        echo first\n"))
        #expect(a.lastAction == .shell(" echo last\n"))
        #expect(r[1].paths == ["/var/log/one.log"] && r[1].frequency == .daily)
        #expect(r[2].size == 1 << 30 && r[2].rotate == -1)
        #expect(try rules("/var/log/a.log {\nsize 0x10\n}\n").first?.size == 16)
        #expect(try rules("/var/log/a.log {\nsize 010\n}\n").first?.size == 8)
        #expect(try rules("/var/log/a.log {\nsize 100\n}\n").first?.size == 100)
        // CRLF line ends (logrotate splits at \n; \r is a blank).
        let crlf = try #require(try rules("/var/log/a.log\r\n{\r\n  rotate 3\r\n  compress\r\n  weekly\r\n}\r\n").first)
        #expect(crlf.paths == ["/var/log/a.log"] && crlf.rotate == 3 && crlf.compress && crlf.frequency == .weekly)
    }

    // MARK: - Refusals name file:line: directive

    @Test(arguments: [
        ("mail root@example.com", "mail"), ("mailfirst", "mailfirst"), ("yearly", "yearly"), ("renamecopy", "renamecopy"),
        ("shred", "shred"), ("shredcycles 3", "shredcycles"), ("addextension .log", "addextension"), ("datehourago", "datehourago"),
        ("ignoreduplicates", "ignoreduplicates"), ("weekly 3", "weekly"), ("su www-data", "su"), ("frobnicate", "frobnicate"),
        ("size 10m", "size"), ("rotate -2", "rotate"), ("rotate 5 # five", "rotate"), ("create 0640 root adm extra", "create"),
        ("dateformat -%Y%b", "dateformat"), ("include /etc/logrotate.d/other", "include"), ("olddir ~/old", "olddir"),
        ("preremove\n  rm -f $1\nendscript", "preremove"), ("su root", "su"),
    ])
    func unsupportedDirectivesAreRefusedWithFileAndLine(directive: String, key: String) throws {
        let message = try #require(importError("# app\n/var/log/app.log {\n  rotate 2\n  \(directive)\n}\n"))
        #expect(message.hasPrefix("/etc/logrotate.d/app:4: \(key): "), "\(message)")
    }

    @Test func topLevelOnlyDirectivesAndBrokenSyntaxAreRefused() throws {
        #expect(importError("tabooext + .foo\n/var/log/a.log {\n}\n")?.hasPrefix("/etc/logrotate.d/app:1: tabooext: not supported") == true)
        #expect(importError("taboopat *.x\n")?.hasPrefix("/etc/logrotate.d/app:1: taboopat: ") == true)
        #expect(importError("include etc/other\n")?.hasPrefix("/etc/logrotate.d/app:1: include: ") == true)
        #expect(importError("/var/log/a.log {\n  postrotate\n    kill -HUP 1\n}\n")?.hasPrefix("/etc/logrotate.d/app:2: postrotate: no endscript") == true)
        #expect(importError("compress\n}\n")?.hasPrefix("/etc/logrotate.d/app:2: unexpected }") == true)
        #expect(importError("/var/log/a.log {\n} daily\n")?.hasPrefix("/etc/logrotate.d/app:2: unexpected text after }") == true)
        #expect(importError("/var/log/a.log {\n  /var/log/b.log {\n}\n")?.hasPrefix("/etc/logrotate.d/app:2: unexpected log filename") == true)
        #expect(importError("var/log/a.log {\n}\n")?.hasPrefix("/etc/logrotate.d/app:1: var: keyword not properly separated") == true)
        #expect(importError("\"var/log/a.log\" {\n}\n")?.hasPrefix("/etc/logrotate.d/app:1: \"var/log/a.log\": guardian needs absolute") == true)
        #expect(importError("/var/log/a.log\n")?.hasPrefix("/etc/logrotate.d/app:1: { expected") == true)
        #expect(importError("/var/log/a.log {\n  daily\n")?.hasPrefix("/etc/logrotate.d/app:1: this log's { has no closing }") == true)
        #expect(importError("/var/log/a.log {\n}\n\n/var/log/a.log {\n}\n")?.hasPrefix("/etc/logrotate.d/app:4: duplicate log entry for /var/log/a.log") == true)
        #expect(importError("/var/log/a.log {\n  rotate\n}\n")?.hasPrefix("/etc/logrotate.d/app:2: rotate: argument expected") == true)
        #expect(importError("/var/log/a.log {\n  compress=yes\n}\n")?.hasPrefix("/etc/logrotate.d/app:2: lines must begin") == true)
    }

    @Test func anIncludedFileReportsItsOwnLineAndAWritableFileIsRefused() throws {
        let dir = try DiskKit.tempDir("lrinc")
        defer { DiskKit.remove(dir) }
        DiskKit.write(dir + "/main", "compress\ninclude \(dir)/d\n")
        mkdir(dir + "/d", 0o755)
        DiskKit.write(dir + "/d/app", "/var/log/app.log {\n  daily\n  mail x@y\n}\n")
        #expect(throws: ConfigError(file: dir + "/d/app", line: 3, key: "mail", message: "not supported by guardian (guardian mails no logs); remove it or keep this log with logrotate")) {
            try LogrotateImport.read(path: dir + "/main")
        }
        DiskKit.write(dir + "/d/app", "/var/log/app.log {\n  daily\n}\n")
        #expect(try LogrotateImport.read(path: dir + "/main").first?.rule.compress == true)
        // logrotate (as root) ignores a group-writable file: importing it would rotate what logrotate does not.
        chmod(dir + "/d/app", 0o664)
        #expect(throws: ConfigError.self) { try LogrotateImport.read(path: dir + "/main") }
    }

    // MARK: - guardian.yml and check-config

    @Test func aLogrotateEntryInGuardianYmlAndCheckConfig() throws {
        let nginx = LogrotateFixtures.directory + "/nginx"
        let config = try GuardianConfig.parse(text: """
            disk:
              logs:
                - paths: [/var/log/app/*.log]
                  rotate: 3
                - logrotate: \(nginx)
                  emergency-truncate: off
            """, file: "g.yml", environment: [:])
        #expect(config.disk.logs.count == 2)
        #expect(config.logOrigins == [nil, "\(nginx):1"])
        #expect(config.disk.logs[1].emergencyTruncate == .off && config.disk.logs[1].rotate == 14)
        let text = config.effectiveDescription
        #expect(text.contains("    # imported from logrotate \(nginx):1\n    - paths: [\"/var/log/nginx/*.log\"]\n      rotate: 14\n"))
        #expect(text.contains("      create: \"0640 www-data adm\"\n"))
        #expect(text.contains("      prerotate: \"if [ -d /etc/logrotate.d/httpd-prerotate ]; then"))
        #expect(text.contains("      sharedscripts: true") == false)  // guardian's default: not printed
        #expect(text.contains("      notifempty: true\n"))

        func error(_ yml: String) -> String? {
            do {
                _ = try GuardianConfig.parse(text: yml, file: "g.yml", environment: [:])
                return nil
            } catch {
                return "\(error)"
            }
        }
        let extra = error("disk:\n  logs:\n    - logrotate: \(nginx)\n      rotate: 3\n")
        #expect(extra?.hasPrefix("g.yml:4: disk.logs[0].rotate: a logrotate: entry takes its rules from the logrotate file") == true, "\(extra ?? "")")
        let dup = error("disk:\n  logs:\n    - paths: [/var/log/nginx/*.log]\n    - logrotate: \(nginx)\n")
        #expect(dup?.hasPrefix("g.yml:4: disk.logs[1]: /var/log/nginx/*.log (from \(nginx):1) is already rotated by a YAML rule") == true, "\(dup ?? "")")
        let debian = try GuardianConfig.parse(
            text: "disk:\n  logs:\n    - logrotate: \(LogrotateFixtures.directory)/btmp\n      defaults: \(LogrotateFixtures.conf)\n",
            file: "g.yml", environment: [:])
        // btmp says monthly and rotate 1; create comes from logrotate.conf's defaults.
        #expect(debian.disk.logs.first?.frequency == .monthly && debian.disk.logs.first?.create == true)
        let dir = try DiskKit.tempDir("lryml")
        defer { DiskKit.remove(dir) }
        DiskKit.write(dir + "/app", "/var/log/app.log {\n  yearly\n}\n")
        let refused = error("disk:\n  logs:\n    - logrotate: \(dir)/app\n")
        #expect(refused?.hasPrefix("\(dir)/app:2: yearly: not supported by guardian") == true, "\(refused ?? "")")
        #expect(refused?.contains("(imported by g.yml:") == true)
    }
}

/// One Debian fixture run twice on the same files: by the real logrotate
/// (paths rewritten under `lr`) and by guardian's rules imported from the
/// same text (paths under `g`). Scripts are replaced by one that records
/// its name and `$1`, so nothing of the host runs.
private final class FixtureTwin {
    let root: String
    let lr: String
    let g: String
    let logs: [String]
    let rules: [LogRotationConfig]
    let lrConf: String

    convenience init(_ name: String) throws {
        try self.init(files: [(name, try LogrotateFixtures.text(name))])
    }

    /// Several files are read as a directory (logrotate: through `include`).
    init(files: [(name: String, text: String)]) throws {
        root = try DiskKit.tempDir("lrtwin")
        lr = root + "/lr"
        g = root + "/g"
        mkdir(lr, 0o755)
        mkdir(g, 0o755)
        mkdir(root + "/lr.d", 0o755)
        mkdir(root + "/g.d", 0o755)
        for (name, text) in files {
            DiskKit.write(root + "/lr.d/" + name, Self.rewrite(text, under: lr, scripts: root + "/lr-scripts.log"))
            DiskKit.write(root + "/g.d/" + name, Self.rewrite(text, under: g, scripts: root + "/g-scripts.log"))
        }
        if files.count == 1 {
            lrConf = Self.rewrite(files[0].text, under: lr, scripts: root + "/lr-scripts.log")
            rules = try LogrotateImport.read(path: root + "/g.d/" + files[0].name).map(\.rule)
        } else {
            lrConf = "include \(root)/lr.d\n"
            rules = try LogrotateImport.read(path: root + "/g.d").map(\.rule)
        }
        // The logs the stanzas name (a glob gets two matches).
        var logs: [String] = []
        for pattern in rules.flatMap(\.paths) {
            let relative = String(pattern.dropFirst(g.count))
            let variants = relative.contains("*") ? ["access", "error"].map { relative.replacingOccurrences(of: "*", with: $0) } : [relative]
            logs += variants
        }
        self.logs = logs
        for side in [lr, g] {
            for log in logs {
                _ = try? DiskKit.run(["mkdir", "-p", side + (log as NSString).deletingLastPathComponent])
            }
        }
    }

    deinit { DiskKit.remove(root) }

    static func rewrite(_ text: String, under side: String, scripts: String) -> String {
        var out: [String] = []
        var inScript = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let word = line.drop { $0 == " " || $0 == "\t" }.prefix { $0.isLetter }
            if inScript {
                if word == "endscript" {
                    inScript = false
                    out.append(String(line))
                }
                continue
            }
            if ["prerotate", "postrotate", "firstaction", "lastaction"].contains(word) {
                inScript = true
                out.append(String(line))
                out.append("\techo \"\(word) $1\" >> \(scripts)")
                continue
            }
            out.append(line.replacingOccurrences(of: "/var/", with: side + "/var/"))
        }
        return out.joined(separator: "\n")
    }

    /// Appends to every log (the second one of each stanza only on odd rounds, so empty logs occur).
    func write(round: Int) {
        for (i, log) in logs.enumerated() where i % 2 == 0 || round % 2 == 1 {
            for side in [lr, g] {
                DiskKit.append(side + log, (1...3).map { "round \(round) line \($0) of \(log)\n" }.joined())
            }
        }
    }

    func rotate(force: Bool) throws -> ProcessOutcome {
        let outcome = try DiskKit.logrotate(lrConf, in: root, force: force)
        let rotator = DiskKit.rotator(rules, state: root + "/guardian-state.json")
        rotator.runScheduled(force: force)
        return outcome
    }

    struct Entry: Equatable, CustomStringConvertible {
        var mode: mode_t
        var uid: uid_t
        var gid: gid_t
        var content: String
        var description: String { String(format: "%o %d:%d %@", mode, uid, gid, content.debugDescription) }
    }

    /// Every file under `side`, by relative path: mode, owner, (decompressed) content.
    func tree(_ side: String) throws -> [String: Entry] {
        var out: [String: Entry] = [:]
        let walker = FileManager.default.enumerator(atPath: side)
        while let relative = walker?.nextObject() as? String {
            var st = stat()
            guard lstat(side + "/" + relative, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { continue }
            out[relative] = Entry(mode: st.st_mode & 0o7777, uid: st.st_uid, gid: st.st_gid, content: try Self.content(side + "/" + relative))
        }
        return out
    }

    /// The scripts each tool ran, in order, with the side's prefix taken out.
    func scriptRuns(_ side: String) -> [String] {
        let file = root + (side == lr ? "/lr-scripts.log" : "/g-scripts.log")
        let text = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
        return text.replacingOccurrences(of: side, with: "ROOT").split(separator: "\n").map(String.init)
    }
}

@Suite(.serialized) struct DiskLogrotateFixtureComparisonTests {
    /// Four forced rounds (logrotate -f and guardian's forced pass) with
    /// writes between, then one scheduled round: the same files, modes,
    /// owners and contents on both sides after every round.
    @Test(arguments: LogrotateFixtures.names)
    func debianFixtureRotatesLikeLogrotate(name: String) throws {
        let t = try FixtureTwin(name)
        #expect(!t.logs.isEmpty && t.rules.allSatisfy { $0.paths.allSatisfy { $0.hasPrefix(t.g + "/var/") } })
        for round in 1...5 {
            t.write(round: round)
            let outcome = try t.rotate(force: round <= 4)
            #expect(outcome.succeeded, "round \(round): logrotate \(outcome.summary)")
            try t.expectSame("\(name) round \(round)")
            #expect(t.scriptRuns(t.lr) == t.scriptRuns(t.g), "\(name) round \(round): scripts run")
            // Not vacuous: the forced rounds made archives.
            if round >= 2 { #expect(try t.tree(t.lr).keys.contains { $0.hasSuffix(".1") || $0.hasSuffix(".1.gz") }, "\(name)") }
        }
    }

    /// Every directive the import maps that the Debian files do not use,
    /// rotated by both tools: start, extension, compresscmd (xz, zstd) with
    /// compressoptions and compressext, olddir + createolddir, rotate -1,
    /// copy, nosharedscripts with all four scripts, su root root.
    @Test func everyMappedDirectiveRotatesLikeLogrotate() throws {
        let t = try FixtureTwin(files: [("synthetic", """
            # globals for every stanza below
            compress
            rotate 2
            create 0640 root adm

            /var/log/b/app.log {
                start 0
                extension .log
                compresscmd /usr/bin/xz
                delaycompress
                create 0600 nobody nogroup
            }
            /var/log/c/app.log {
                olddir archive
                createolddir 0750 root adm
                rotate -1
                copy
                nocompress
            }
            /var/log/d/*.log {
                nosharedscripts
                copytruncate
                su root root
                compresscmd /usr/bin/zstd
                compressoptions -q -3
                compressext .zst
                firstaction
                    echo "firstaction $1" >> SCRIPTS
                endscript
                prerotate
                    echo "prerotate $1" >> SCRIPTS
                endscript
                postrotate
                    echo "postrotate $1" >> SCRIPTS
                endscript
                lastaction
                    echo "lastaction $1" >> SCRIPTS
                endscript
            }
            /var/log/e/app.log
            /var/log/e/other.log {
                sharedscripts
                nocreate
                missingok
                rotate 1
                prerotate
                    echo "prerotate $1" >> SCRIPTS
                endscript
                postrotate
                    echo "postrotate $1" >> SCRIPTS
                endscript
            }
            """)])
        #expect(t.rules.count == 4)
        for round in 1...4 {
            t.write(round: round)
            let outcome = try t.rotate(force: true)
            #expect(outcome.succeeded, "round \(round): logrotate \(outcome.summary)")
            try t.expectSame("round \(round)")
            #expect(t.scriptRuns(t.lr) == t.scriptRuns(t.g), "round \(round): scripts run")
        }
        let g = try t.tree(t.g)
        #expect(g["var/log/b/app.0.log"] != nil && g["var/log/b/app.1.log.xz"] != nil)
        #expect(g["var/log/c/archive/app.log.4"] != nil)
        #expect(g.keys.contains { $0.hasPrefix("var/log/d/access.log.1.zst") })
        // $1 of firstaction: the path list as written, its space before { included.
        #expect(t.scriptRuns(t.g).contains("firstaction ROOT/var/log/d/*.log "))
    }

    /// Dated names: dateext, dateformat, dateyesterday, extension, and
    /// maxage deleting a 40-day-old archive (one forced round: a second one
    /// the same day would make the same name).
    @Test func datedArchivesAndMaxageLikeLogrotate() throws {
        let t = try FixtureTwin(files: [("dated", """
            /var/log/f/app.log {
                dateext
                dateformat -%Y-%m-%d
                dateyesterday
                extension .log
                maxage 30
                rotate 5
                compress
            }
            """)])
        t.write(round: 1)
        for side in [t.lr, t.g] {
            for (day, age) in [("01", 40.0), ("02", 20.0)] {
                let plain = side + "/var/log/f/app-2020-01-\(day).log"
                DiskKit.write(plain, "archive of day \(day)\n")
                try DiskKit.run(["gzip", plain])
                DiskKit.setMTime(plain + ".gz", daysAgo: age)
            }
        }
        let outcome = try t.rotate(force: true)
        #expect(outcome.succeeded, "logrotate \(outcome.summary)")
        try t.expectSame("dated")
        let yesterday = LogRotator.dateStamp(Date().addingTimeInterval(-86400), format: "-%Y-%m-%d")
        // No create: the log is gone until its writer makes it again (logrotate's default).
        #expect(try t.tree(t.g).keys.sorted() == ["var/log/f/app-2020-01-02.log.gz", "var/log/f/app\(yesterday).log.gz"])
    }

    /// Directives at the top of a file apply to the stanzas after it and,
    /// logrotate's way, to the files read after it from the same directory.
    @Test func globalDirectivesAcrossFilesRotateLikeLogrotate() throws {
        let t = try FixtureTwin(files: [
            ("a-first", "/var/log/a/before.log {\n  rotate 1\n}\ncompress\nrotate 2\ncreate 0600\n/var/log/a/after.log {\n}\n"),
            ("b-second", "/var/log/b/one.log /var/log/b/two.log {\n  nocompress\n}\n/var/log/b/three.log {\n  rotate 1\n}\n"),
            ("b-second.dpkg-old", "/var/log/b/old.log {\n  mail root\n}\n"),
        ])
        #expect(t.rules.count == 4)
        for round in 1...4 {
            t.write(round: round)
            let outcome = try t.rotate(force: true)
            #expect(outcome.succeeded, "round \(round): logrotate \(outcome.summary)")
            try t.expectSame("round \(round)")
        }
        #expect(try t.tree(t.g).keys.contains("var/log/b/three.log.1.gz"))
        #expect(try t.tree(t.g)["var/log/a/after.log"]?.mode == 0o600)
    }
}

extension FixtureTwin {
    /// Decompressed content by the archive's extension (gzip, xz, zstd, bzip2).
    static func content(_ path: String) throws -> String {
        let tools = [".xz": "xz", ".zst": "zstd", ".bz2": "bzip2"]
        guard let tool = tools.first(where: { path.hasSuffix($0.key) })?.value else { return try DiskKit.content(path) }
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw SystemError("open", path: path) }
        defer { close(fd) }
        let r = try DiskKit.run([tool, "-dc"], stdin: fd)
        guard r.succeeded else { throw SystemError("\(tool) -dc (\(r.summary))", path: path, code: EIO) }
        return String(decoding: r.stdout, as: UTF8.self)
    }

    /// The same relative names, modes, owners and (decompressed) contents on both sides.
    func expectSame(_ what: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let a = try tree(lr)
        let b = try tree(g)
        #expect(a.keys.sorted() == b.keys.sorted(), "\(what): names", sourceLocation: sourceLocation)
        for (path, x) in a.sorted(by: { $0.key < $1.key }) {
            guard let y = b[path] else { continue }
            #expect(x == y, "\(what): \(path)", sourceLocation: sourceLocation)
        }
    }
}
