import Foundation
import Platform
import Testing

@testable import Remediate
@testable import guardian

/// The pure schedule of recovery drills (`DrillSchedule.nextRun`) and the
/// drill keys of the configuration.
@Suite struct DrillScheduleTests {
    static let utc = TimeZone(identifier: "UTC")!
    static let catchUp = Duration.seconds(300)

    /// `2026-11-25T10:00:00Z` (a Wednesday) → Date.
    func at(_ text: String) -> Date {
        guard let d = Timestamps.parse(text) else { fatalError("bad test date \(text)") }
        return d
    }

    @Test(arguments: [
        ("sun 03:00", DrillSchedule.weekly(weekday: 1, hour: 3, minute: 0)),
        ("Sunday 3:00", .weekly(weekday: 1, hour: 3, minute: 0)),
        ("sat 23:59", .weekly(weekday: 7, hour: 23, minute: 59)),
        ("  mon   00:00 ", .weekly(weekday: 2, hour: 0, minute: 0)),
        ("WED 12:30", .weekly(weekday: 4, hour: 12, minute: 30)),
    ])
    func weeklySlotsParse(text: String, expected: DrillSchedule) {
        #expect(DrillSchedule.parseWeekly(text) == expected)
    }

    @Test(arguments: ["sunday 3am", "sun", "sun 24:00", "sun 03:60", "sun 3:0", "sun 03:00:00", "funday 03:00", "03:00 sun", "sun -1:30", "sun ٠٣:٠٠"])
    func weeklySlotsRefuse(text: String) {
        #expect(DrillSchedule.parseWeekly(text) == nil)
    }

    @Test func configValueRoundTrips() {
        for text in ["sun 03:00", "sat 23:59", "wed 12:30"] {
            #expect(DrillSchedule.parseWeekly(text)?.configValue == text)
        }
        #expect(DrillSchedule.weekly(weekday: 1, hour: 3, minute: 0).description == "weekly sun 03:00 (local time)")
    }

    @Test func intervalCountsFromTheLastRecordedDrill() {
        let s = DrillSchedule.every(.seconds(7 * 86400))
        let now = at("2026-11-25T10:00:00Z")
        // No history: shortly after the start, not a week later.
        #expect(s.nextRun(after: nil, now: now, catchUp: Self.catchUp) == now.addingTimeInterval(300))
        // Two days after the last drill: five days to go — a restart does not reset it.
        let last = at("2026-11-23T10:00:00Z")
        #expect(s.nextRun(after: last, now: now, catchUp: Self.catchUp) == at("2026-11-30T10:00:00Z"))
        // Overdue (guardian was down): catch up shortly after the start, once.
        let old = at("2026-11-10T10:00:00Z")
        #expect(s.nextRun(after: old, now: now, catchUp: Self.catchUp) == now.addingTimeInterval(300))
        // A last drill in the future (clock set back) counts as now.
        #expect(s.nextRun(after: at("2026-12-25T10:00:00Z"), now: now, catchUp: Self.catchUp) == at("2026-12-02T10:00:00Z"))
    }

    @Test func anIntervalShorterThanTheCatchUpIsUsedInstead() {
        let s = DrillSchedule.every(.seconds(2))
        let now = at("2026-11-25T10:00:00Z")
        #expect(s.nextRun(after: nil, now: now, catchUp: Self.catchUp) == now.addingTimeInterval(2))
        #expect(s.nextRun(after: now.addingTimeInterval(-60), now: now, catchUp: Self.catchUp) == now.addingTimeInterval(2))
        #expect(s.nextRun(after: now.addingTimeInterval(-1), now: now, catchUp: Self.catchUp) == now.addingTimeInterval(1))
    }

    @Test func weeklyRunsAtTheNextSlotInLocalTime() throws {
        let s = try #require(DrillSchedule.parseWeekly("sun 03:00"))
        let wednesday = at("2026-11-25T10:00:00Z")
        // No history: the coming Sunday, not now.
        #expect(s.nextRun(after: nil, now: wednesday, catchUp: Self.catchUp, timeZone: Self.utc) == at("2026-11-29T03:00:00Z"))
        // Last Sunday's drill ran: the coming Sunday.
        #expect(s.nextRun(after: at("2026-11-22T03:00:00Z"), now: wednesday, catchUp: Self.catchUp, timeZone: Self.utc) == at("2026-11-29T03:00:00Z"))
        // A drill exactly at the slot: the next week's.
        #expect(s.nextRun(after: at("2026-11-29T03:00:00Z"), now: at("2026-11-29T03:00:10Z"), catchUp: Self.catchUp, timeZone: Self.utc)
            == at("2026-12-06T03:00:00Z"))
        // A manual drill on Wednesday does not move the weekly slot.
        #expect(s.nextRun(after: wednesday, now: wednesday.addingTimeInterval(60), catchUp: Self.catchUp, timeZone: Self.utc) == at("2026-11-29T03:00:00Z"))
        // Sunday's slot was missed (guardian was down): catch up after the start.
        #expect(s.nextRun(after: at("2026-11-15T03:00:00Z"), now: wednesday, catchUp: Self.catchUp, timeZone: Self.utc) == wednesday.addingTimeInterval(300))
        // The slot is in the configured zone: 09:00 in New York is 14:00 UTC in winter, 13:00 in summer.
        let ny = try #require(TimeZone(identifier: "America/New_York"))
        let monday = try #require(DrillSchedule.parseWeekly("mon 09:00"))
        #expect(monday.nextRun(after: nil, now: wednesday, catchUp: Self.catchUp, timeZone: ny) == at("2026-11-30T14:00:00Z"))
        #expect(monday.nextRun(after: nil, now: at("2026-07-01T00:00:00Z"), catchUp: Self.catchUp, timeZone: ny) == at("2026-07-06T13:00:00Z"))
    }

    @Test func weeklySlotsAcrossDaylightSavingChanges() throws {
        let berlin = try #require(TimeZone(identifier: "Europe/Berlin"))
        let s = try #require(DrillSchedule.parseWeekly("sun 02:30"))
        // 2026-03-29: clocks jump from 02:00 to 03:00; 02:30 does not exist → the next valid time, 03:00 CEST.
        let spring = s.nextRun(after: nil, now: at("2026-03-28T12:00:00Z"), catchUp: Self.catchUp, timeZone: berlin)
        #expect(spring == at("2026-03-29T01:00:00Z"), "\(spring)")
        // 2026-10-25: 02:30 happens twice; the first (CEST, 00:30 UTC) counts, once.
        let autumn = s.nextRun(after: nil, now: at("2026-10-24T12:00:00Z"), catchUp: Self.catchUp, timeZone: berlin)
        #expect(autumn == at("2026-10-25T00:30:00Z"), "\(autumn)")
        let after = s.nextRun(after: autumn, now: autumn.addingTimeInterval(60), catchUp: Self.catchUp, timeZone: berlin)
        #expect(after == at("2026-11-01T01:30:00Z"), "the second 02:30 must not run it again: \(after)")
    }

    // MARK: - Configuration

    let env = ["HOME": "/root", "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEY123", "AWS_SECRET_ACCESS_KEY": "example-secret"]

    func parse(_ text: String) throws -> GuardianConfig {
        try GuardianConfig.parse(text: text, file: "g.yml", environment: env)
    }

    @Test func drillKeysParse() throws {
        let c = try parse("""
            drills:
              interval: 3d
              budget: 5m
              queries:
                - sql: SELECT count(*) FROM users
            dbs:
              - path: /data/app.db
                replicas:
                  - url: file:///backup/app
                  - name: s3
                    url: s3://bucket/app
                drill:
                  weekly: "sun 03:00"
                  replica: s3
                  scratch-dir: /var/tmp/drills
                  queries:
                    - sql: SELECT count(*) FROM users
                      min: 1000
                    - sql: SELECT count(*) FROM orders
                      within-live: 5%
              - path: /data/blog.db
                replicas:
                  - url: file:///backup/blog
              - path: /data/cache.db
                replicas:
                  - url: file:///backup/cache
                drill: off
              - path: /data/scratch.db
            """)
        let app = try #require(c.dbs[0].drill)
        #expect(app.schedule == .weekly(weekday: 1, hour: 3, minute: 0))
        #expect(app.budget == .seconds(300), "the default from drills: stays")
        #expect(app.replica == "s3" && app.scratchDir == "/var/tmp/drills")
        #expect(app.queries == [
            DrillQuery(sql: "SELECT count(*) FROM users", min: 1000),
            DrillQuery(sql: "SELECT count(*) FROM orders", withinLivePercent: 5),
        ])
        #expect(app.queries[0].effectiveMin == 1000 && app.queries[1].effectiveMin == nil)
        let blog = try #require(c.dbs[1].drill)
        #expect(blog.schedule == .every(.seconds(3 * 86400)) && blog.queries.count == 1 && blog.queries[0].effectiveMin == 1)
        #expect(blog.scratchDirectory(stateDir: "/var/lib/guardian") == "/var/lib/guardian/drills")
        #expect(c.dbs[2].drill == nil, "drill: off")
        #expect(c.dbs[3].drill == nil, "no replicas, nothing to drill")
        #expect(try parse("dbs:\n  - path: /a.db\n    replicas:\n      - path: /r\n").dbs[0].drill == nil, "no drills unless configured")
    }

    /// Each bad drill configuration fails with exactly this `file:line: key: what is wrong`.
    @Test(arguments: [
        ("dbs:\n  - path: /a.db\n    replicas:\n      - path: /r\n    drill:\n      weekly: sunday 3am\n",
         "g.yml:6: dbs[0].drill.weekly: \"sunday 3am\" must be \"DAY HH:MM\" in local time, e.g. \"sun 03:00\" (days: sun mon tue wed thu fri sat)"),
        ("dbs:\n  - path: /a.db\n    replicas:\n      - path: /r\n    drill:\n      interval: 1d\n      weekly: sun 03:00\n",
         "g.yml:6: dbs[0].drill: interval: and weekly: exclude each other; give one schedule"),
        ("dbs:\n  - path: /a.db\n    replicas:\n      - path: /r\n    drill:\n      replica: s3\n",
         "g.yml:6: dbs[0].drill.replica: no replica named \"s3\" in this database (its replicas: file)"),
        ("drills:\n  replica: s3\n", "g.yml:2: drills.replica: goes in a database's drill: (replica names belong to one database)"),
        ("dbs:\n  - path: /a.db\n    replicas:\n      - path: /r\n    drill:\n      budget: 0s\n", "g.yml:6: dbs[0].drill.budget: must be more than 0"),
        ("drills:\n  interval: weekly\n", "g.yml:2: drills.interval: \"weekly\" is not a duration (use 1s, 250ms, 72h)"),
        ("dbs:\n  - path: /a.db\n    replicas:\n      - path: /r\n    drill:\n      queries:\n        - sql: SELECT 1\n          max: 5\n",
         "g.yml:8: dbs[0].drill.queries[0].max: unknown key"),
        ("dbs:\n  - path: /a.db\n    replicas:\n      - path: /r\n    drill:\n      queries:\n        - min: 5\n",
         "g.yml:7: dbs[0].drill.queries[0].sql: is required"),
        ("dbs:\n  - path: /a.db\n    replicas:\n      - path: /r\n    drill:\n      queries:\n        - sql: SELECT 1\n          within-live: 150%\n",
         "g.yml:8: dbs[0].drill.queries[0].within-live: \"150%\" is not a percentage between 0% and 100%"),
        ("dbs:\n  - path: /a.db\n    replicas:\n      - path: /r\n    drill:\n      queries:\n        - sql: SELECT 1\n          min: lots\n",
         "g.yml:8: dbs[0].drill.queries[0].min: \"lots\" is not a whole number"),
        ("dbs:\n  - path: /a.db\n    drill:\n      interval: 1d\n", "g.yml:4: dbs[0].drill: this database has no replicas to drill"),
        ("dbs:\n  - path: /a.db\n    replicas:\n      - path: /r\n    drill:\n      scratch-dir: tmp/drills\n",
         "g.yml:6: dbs[0].drill.scratch-dir: \"tmp/drills\" must be an absolute path"),
    ])
    func badDrillConfigs(text: String, expected: String) {
        do {
            _ = try parse(text)
            Issue.record("accepted: \(text)")
        } catch let e as ConfigError {
            #expect(e.description == expected)
        } catch {
            Issue.record("unexpected: \(error)")
        }
    }
}
