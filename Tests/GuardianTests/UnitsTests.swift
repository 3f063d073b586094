import Testing
@testable import Platform

@Suite struct UnitsTests {
    @Test func durations() {
        #expect(Units.duration("250ms") == .milliseconds(250))
        #expect(Units.duration("1s") == .seconds(1))
        #expect(Units.duration("72h") == .seconds(72 * 3600))
        #expect(Units.duration("1h30m") == .seconds(5400))
        #expect(Units.duration("7d") == .seconds(7 * 86400))
        #expect(Units.duration("0") == .zero)
        #expect(Units.duration("fast") == nil)
        #expect(Units.duration("10") == nil)
        #expect(Units.duration("") == nil)
        // Too long to count in nanoseconds: nil (the caller says "too long"), never a trap.
        #expect(Units.duration("1000000d") == nil)
        #expect(Units.durationSeconds("1000000d") == 86_400_000_000)
        #expect(Units.duration("36500d") == Units.maxDuration)
        #expect(Units.duration("36501d") == nil)
        #expect(Units.duration(String(repeating: "9", count: 400) + "s") == nil)
        #expect(Units.durationSeconds(String(repeating: "9", count: 400) + "s") == nil)
    }

    @Test func sizes() {
        #expect(Units.bytes("100MB") == 100_000_000)
        #expect(Units.bytes("1GiB") == Int64(1) << 30)
        #expect(Units.bytes("512K") == Int64(524_288))
        #expect(Units.bytes("4096") == 4096)
        #expect(Units.bytes("12 parsecs") == nil)
        #expect(Units.bytes("99999999999TB") == nil)
        #expect(Units.byteCount("99999999999TB") == 99999999999e12)
        #expect(Units.bytes(String(repeating: "9", count: 400)) == nil)
    }

    @Test func percentages() {
        #expect(Units.percent("80%") == 80)
        #expect(Units.percent("95") == 95)
        #expect(Units.percent("120%") == nil)
    }
}
