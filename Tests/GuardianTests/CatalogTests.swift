import Foundation
import Platform
import Testing
@testable import guardian

/// `journalctl -x` explains every MESSAGE_ID guardian logs: each event of
/// every module has a well-formed, unique id and an explanation.
@Suite struct CatalogTests {
    @Test func everyEventHasAnIdAndAnExplanation() {
        #expect(JournalCatalog.problems(GuardianEvent.everyKind) == [])
        let names = GuardianEvent.everyKind.map(\.name)
        #expect(Set(names).count == names.count, "an event is listed twice")
        #expect(names.contains("diskFillForecastCleared"))
    }

    @Test func theRenderedCatalogHasOneEntryPerEvent() {
        let text = JournalCatalog.render(GuardianEvent.everyKind)
        for e in GuardianEvent.everyKind {
            #expect(text.contains("-- \(e.id)\n"), "\(e.name) missing from the rendered catalog")
        }
    }
}
