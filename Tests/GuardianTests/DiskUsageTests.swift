import Foundation
import Testing
@testable import DiskWatch
@testable import Platform

@Suite struct DiskUsageTests {
    // MARK: - Levels with hysteresis

    @Test func levelsAreEnteredOnceAndLeftOnce() {
        let policy = LevelPolicy(warn: 80, critical: 90, emergency: 95, hysteresis: 2)
        var level = DiskLevel.normal
        var changes: [DiskLevel] = []
        func observe(_ p: Double) {
            let next = policy.next(from: level, percent: p)
            if next != level { changes.append(next) }
            level = next
        }
        // Hovering around 80 %: one crossing up, none back until below 78 %.
        for p in [79.9, 80.0, 79.5, 80.4, 78.1, 80.9, 79.0, 78.0] { observe(p) }
        #expect(changes == [.warn])
        observe(77.9)
        #expect(changes == [.warn, .normal])
        // Straight to emergency, then down step by step with the same rule.
        changes = []
        for p in [96.0, 94.0, 93.1, 92.9, 88.5, 87.9, 78.5, 77.0] { observe(p) }
        #expect(changes == [.emergency, .critical, .warn, .normal])
        // A drop from emergency far below: one change, to where usage is.
        changes = []
        observe(99)
        observe(50)
        #expect(changes == [.emergency, .normal])
    }

    @Test func noisyUsageAtAThresholdIsOneCrossing() {
        let policy = LevelPolicy(warn: 80, critical: 90, emergency: 95, hysteresis: 2)
        var level = DiskLevel.normal
        var crossings = 0
        for i in 0..<1000 {
            let p = 80 + 1.5 * sin(Double(i) / 3)  // 78.5 ... 81.5
            let next = policy.next(from: level, percent: p)
            if next != level { crossings += 1 }
            level = next
        }
        #expect(crossings == 1)
        #expect(level == .warn)
    }

    // MARK: - Forecast

    @Test func forecastIsTheLeastSquaresSlope() throws {
        var h = UsageHistory(capacity: 100)
        // 100 bytes/s with noise of ±30 bytes around the line.
        for t in 0..<20 {
            h.append(.init(time: Double(t), usedBytes: 1_000 + 100 * Double(t) + (t % 2 == 0 ? 30 : -30), usedInodes: 10))
        }
        let s = try #require(h.slopes(window: 60))
        #expect(abs(s.bytes - 100) < 5)
        let eta = try #require(h.secondsToFull(availableBytes: 5_000, availableInodes: nil, window: 60))
        #expect(abs(eta - 50) < 3)
    }

    @Test func noForecastWhenNotGrowing() {
        var flat = UsageHistory(capacity: 10)
        var shrinking = UsageHistory(capacity: 10)
        for t in 0..<10 {
            flat.append(.init(time: Double(t), usedBytes: 5_000, usedInodes: 7))
            shrinking.append(.init(time: Double(t), usedBytes: 5_000 - 10 * Double(t), usedInodes: 7))
        }
        #expect(flat.secondsToFull(availableBytes: 1_000, availableInodes: 100, window: 60) == nil)
        #expect(shrinking.secondsToFull(availableBytes: 1_000, availableInodes: 100, window: 60) == nil)
        var tooFew = UsageHistory(capacity: 10)
        tooFew.append(.init(time: 0, usedBytes: 0, usedInodes: 0))
        tooFew.append(.init(time: 1, usedBytes: 100, usedInodes: 0))
        #expect(tooFew.secondsToFull(availableBytes: 1_000, availableInodes: nil, window: 60) == nil)
    }

    @Test func forecastUsesOnlyTheRecentWindowAndTheRing() throws {
        var h = UsageHistory(capacity: 8)
        // Fast growth long ago, slow growth recently.
        for t in 0..<10 { h.append(.init(time: Double(t), usedBytes: 10_000 * Double(t), usedInodes: 0)) }
        for t in 10..<20 { h.append(.init(time: Double(t), usedBytes: 90_000 + 10 * Double(t - 9), usedInodes: 0)) }
        #expect(h.ordered.count == 8)
        #expect(h.ordered.first?.time == 12)
        let s = try #require(h.slopes(window: 5))
        #expect(abs(s.bytes - 10) < 0.001)
    }

    @Test func inodesCanBeWhatRunsOut() throws {
        var h = UsageHistory(capacity: 10)
        for t in 0..<10 { h.append(.init(time: Double(t), usedBytes: 1_000 + Double(t), usedInodes: 100 + 10 * Double(t))) }
        // Bytes would last 100000 s, inodes 5 s.
        let eta = try #require(h.secondsToFull(availableBytes: 100_000, availableInodes: 50, window: 60))
        #expect(abs(eta - 5) < 0.01)
    }

    @Test func forecastOfARealFillingFilesystem() async throws {
        let fs = try DiskKit.Tmpfs(size: "64m")
        defer { fs.unmount() }
        var h = UsageHistory(capacity: 100)
        let start = try #require(fs.usage)
        h.append(start)
        for i in 0..<8 {
            try DiskKit.fill(fs.path + "/f\(i)", bytes: 1 << 20)
            try await Task.sleep(for: .milliseconds(50))
            h.append(try #require(fs.usage))
        }
        let last = try #require(fs.usage)
        let rate = Double(last.usedBytes - start.usedBytes) / (last.time - start.time)
        let eta = try #require(h.secondsToFull(availableBytes: last.availableBytes, availableInodes: last.availableInodes, window: 60))
        let expected = Double(last.availableBytes) / rate
        #expect(eta > expected * 0.5 && eta < expected * 2, "eta \(eta) s, expected about \(expected) s")
    }

    // MARK: - Sampling

    @Test func samplesAreOnePerFilesystem() throws {
        let a = try DiskKit.Tmpfs(size: "8m")
        defer { a.unmount() }
        let b = try DiskKit.Tmpfs(size: "4m", inodes: 64)
        defer { b.unmount() }
        mkdir(a.path + "/db", 0o755)
        mkdir(a.path + "/logs", 0o755)
        for i in 0..<40 { DiskKit.write(b.path + "/f\(i)", "x") }
        let paths = [a.path + "/db/app.db", a.path + "/logs", a.path + "/replica/not-yet", b.path]
        let result = UsageSampler.sample(paths: paths, mounts: MountTable())
        #expect(result.failures.isEmpty)
        #expect(result.samples.count == 2)
        let sa = try #require(result.samples.first { $0.mountPoint == a.path })
        let sb = try #require(result.samples.first { $0.mountPoint == b.path })
        #expect(sa.paths == [a.path + "/db/app.db", a.path + "/logs", a.path + "/replica/not-yet"])
        #expect(sa.totalBytes == 8 << 20)
        #expect(sb.paths == [b.path])
        // 41 of 64 inodes (the root directory counts): inodes are what is full.
        let inodes = try #require(sb.inodesPercent)
        #expect(inodes > 60 && inodes < 70)
        #expect(sb.percent == inodes)
        #expect(sb.bytesPercent < 5)
    }

    @Test func mountPointOfTheRootFilesystem() {
        var st = stat()
        stat("/", &st)
        #expect(MountTable.lookup(device: UInt64(st.st_dev), path: "/usr/bin") == "/")
        #expect(MountTable.unescape("/mnt/with\\040space") == "/mnt/with space")
    }
}
