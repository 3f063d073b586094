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
    }

    @Test func sizes() {
        #expect(Units.bytes("100MB") == 100_000_000)
        #expect(Units.bytes("1GiB") == Int64(1) << 30)
        #expect(Units.bytes("512K") == Int64(524_288))
        #expect(Units.bytes("4096") == 4096)
        #expect(Units.bytes("12 parsecs") == nil)
    }

    @Test func percentages() {
        #expect(Units.percent("80%") == 80)
        #expect(Units.percent("95") == 95)
        #expect(Units.percent("120%") == nil)
    }
}
