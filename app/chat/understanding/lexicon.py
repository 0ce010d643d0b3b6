"""The words the offline model knows, in English and German.

Grammar words carry the request (verbs, nouns of the item kinds, status and priority
words, pronouns, fillers); whatever a message has besides them names an item.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

# Item kinds the grammar below knows, in the order their nouns are looked up. The
# nouns themselves are declared by the agents (`nouns` on each agent class) and filled
# in by `learn` when an agent registers: table → nouns, noun → table, table → agent.
PARSED_TABLES = ("tasks", "projects", "checkpoints", "notes", "comments")
NOUNS: dict[str, tuple[str, ...]] = {}
NOUN_TABLE: dict[str, str] = {}
TABLE_AGENT: dict[str, str] = {}
PLURAL_TASKS = frozenset({"tasks", "todos", "to-dos", "aufgaben"})


def learn(declared: Iterable[tuple[str, Mapping[str, Sequence[str]]]]) -> None:
    """Rebuild the noun tables, in place, from (agent, {table: nouns}) declarations.

    Only the tables the grammar knows get nouns here; an agent with a kind of record of
    its own is routed by its nouns alone (`app.chat.demo_intent`).
    """
    nouns: dict[str, list[str]] = {}
    agents: dict[str, str] = {}
    for agent, tables in declared:
        for table, words in tables.items():
            agents.setdefault(table, agent)
            nouns.setdefault(table, []).extend(w.lower() for w in words)
    NOUNS.clear()
    NOUNS.update({t: tuple(nouns[t]) for t in PARSED_TABLES if t in nouns})
    NOUN_TABLE.clear()
    NOUN_TABLE.update({noun: table for table, words in NOUNS.items() for noun in words})
    TABLE_AGENT.clear()
    TABLE_AGENT.update(agents)


LABEL = {"tasks": "title", "projects": "name", "checkpoints": "title", "notes": "title"}
LABEL["comments"] = "body"

PRONOUNS = frozenset(
    "it that this them one es das dies diese diesen die den ihn dem dazu damit".split()  # noqa: SIM905
)

GRAMMAR = frozenset(
    """
    a an the to of for on in at by and or with from into about as is are was were be been
    being it its it's this that these those them they one ones my me i i'm im i've ive we
    we're you your our us please pls plz can could would should will shall just now still
    yet already really actually also too then so oh ok okay hey hi thanks thank all any
    anything some stuff thing things item items list show display what what's whats which
    how how's when where who there here up off out back again not no isn't don't dont do
    does did done finish finished finishing complete completed completing mark marked set
    change changed update move moved push pushed postpone postponed reschedule rescheduled
    shift make made get got put add added create new delete delet remove removed drop rid
    trash scrap kill erase forget forgot rename renamed task tasks todo todos to-do to-dos
    reminder reminders note notes project projects checkpoint checkpoints milestone
    milestones comment comments priority prio high low medium normal urgent asap important
    critical top bump bumped raise raised lower lowered increase decrease higher less wait
    rush whenever due date deadline today tomorrow tonight week weeks day days month months
    end next last coming start started starting working work begin began tick ticked cross
    crossed check checked reopen open undo status title name reached hit missed slipped
    approve approved achieved archive archived restore unarchive reactivate permanently
    good completely forever upcoming right going let's lets want need needs have has had
    must gotta went teh hte cheers great perfect everything whole currently
    der die das den dem des ein eine einen einem einer und oder mit von zu zum zur für auf
    im an am bei bis nach über aus als ist sind war hat haben habe hab ich du wir mir mich
    es dies diese diesen dieser noch schon auch bitte mal jetzt gerade doch wieder nicht
    kein keine alle alles meine mein meinen was wie welche welcher zeig zeige zeigen liste
    aufgabe aufgaben projekt projekte notiz notizen meilenstein meilensteine kommentar
    kommentare priorität prio hoch hohe hoher hohen niedrig niedrige niedrigere mittel
    dringend wichtig eilig erledigt erledigte erledigten fertig abgehakt hak hake ab
    abhaken markier markiere markieren setz setze setzen verschieb verschiebe verschieben
    schieb schiebe schieben lösch lösche löschen entfernen entferne streich streiche
    benenne um umbenennen neu neue neuer neues füge füg hinzu hinzufügen leg lege anlegen
    erstelle erstellen mach mache angefangen anfangen fang beginne begonnen arbeit arbeite
    läuft wiederherstellen offen offene senk senke runter erhöh erhöhe heute morgen
    übermorgen woche wochen tag tage tagen monat monats ende nächste nächsten kommenden
    erreicht geschafft verpasst archiviere archivieren archivierte aktiv danke steht
    fälligkeitsdatum fällig termin status titel name vom
    """.split()  # noqa: SIM905 - a word list reads better as text
)

# Leading words that only introduce a new item: "please add a task to", "ich muss noch".
LEAD_WORDS = frozenset(
    """
    please pls plz can could would you hey oh ok okay also and so just add create make
    new put set up start a an another one me i i'm we have need needs must gotta got
    should remind remember don't dont do not forget mustn't i've ive task todo to-do
    reminder item high low medium priority prio - – : , to
    bitte kannst könntest du neue neuer neues füge füg hinzu hinzufügen leg lege an
    erstelle erstell eine einen ein mir erinnere erinner mich daran ich muss müsste
    sollte noch unbedingt mal nicht vergessen aufgabe todo anlegen und auch
    """.split()  # noqa: SIM905 - a word list reads better as text
)
# Words that end a lead-in: after "to" (or "daran") the item's own words begin.
LEAD_STOP = frozenset({"to", "daran"})

# The start of a request to create an item.
CREATE_CUE = re.compile(
    r"^(?:(?:please|pls|plz|can you|could you|would you|hey|oh|ok|okay|also|and|so|bitte|"
    r"kannst du|könntest du|und|auch)\b[\s,]*)*"
    r"(?:add|ad|create|make (?:a|an|me a|another|new)|new|start (?:a|an|new)|set up|"
    r"put\s+['\"]|remind|remember|don'?t forget|do not forget|i must not forget|"
    r"i mustn'?t forget|i have to|i'?ve got to|i need to|need to|i must|must|gotta|"
    r"got to|have to|i should|todo\b|to-do\b|task\b|tasks\b|jot|note to self|"
    r"write (?:a|me a|down)|take a note|neue[rns]?|füge?|leg(?:e)?|erstell(?:e)?|"
    r"erinner(?:e)?|ich muss|muss|nicht vergessen|aufgaben?\b|notiz\b|notier|"
    r"schreib(?:e)?|mach (?:eine|ein|mir)|kommentar)\b",
    re.I,
)
DELETE_CUE = re.compile(
    r"\b(?:delete|delet|remove|drop|get rid of|trash|scrap|kill|erase|forget about|"
    r"lösch\w*|losch\w*|entfern\w*|streich\w*|weg damit)\b",
    re.I,
)
ARCHIVE_CUE = re.compile(r"\b(?:archive|archivier\w*|shelve)\b", re.I)
RESTORE_CUE = re.compile(
    r"\b(?:restore|unarchive|reactivate|bring back|wiederherstell\w*|reaktivier\w*)\b", re.I
)
PERMANENT_CUE = re.compile(
    r"\b(?:permanently|for good|completely|forever|endgültig|für immer|komplett)\b", re.I
)
READ_CUE = re.compile(
    r"^(?:(?:please|pls|can you|could you|hey|oh|ok|so|bitte|und)\b[\s,]*)*"
    r"(?:show|shwo|sho|list|what|what's|whats|which|any|anything|how|how's|display|open|"
    r"read|find|search|give me|tell me|do i have|my|all|zeig\w*|was|welche\w*|wie|liste|"
    r"gibt es|meine?|alle|lies|öffne)\b",
    re.I,
)
DUE_TODAY_CUE = re.compile(
    r"\b(?:today|overdue|late|due now|on my plate|heute|überfällig|ueberfaellig|"
    r"steht\b.*\ban)\b",
    re.I,
)
GET_PROJECT_CUE = re.compile(r"\b(?:how's|how is|how are|status of|wie läuft|wie steht)\b", re.I)

TODO_CUE = re.compile(
    r"\b(?:reopen|re-open|not (?:yet )?(?:done|finished|complete)|isn'?t (?:done|finished)|"
    r"is not (?:done|finished)|undo|back to (?:todo|to do|open)|wieder (?:auf|öffnen|offen)|"
    r"doch nicht erledigt|nicht erledigt|noch nicht fertig)\b",
    re.I,
)
PROGRESS_CUE = re.compile(
    r"\b(?:in progress|in-progress|start(?:ed|ing)?|working on|work on|begin|began|begun|"
    r"on it|angefangen|anfangen|beginne\w*|begonnen|in arbeit|arbeite\w* (?:gerade )?an|dran)\b",
    re.I,
)
DONE_CUE = re.compile(
    r"\b(?:done|dnoe|finished|finish|complete|completed|tick(?:ed)?|check(?:ed)? (?:it |that )?off|"
    r"cross(?:ed)?|went out|wrapped up|knocked out|erledigt\w*|fertig|abgehakt|hak\w*|"
    r"abhaken|abgeschlossen|geschafft|gemacht)\b",
    re.I,
)
LIST_OPEN_CUE = re.compile(r"\b(?:open|todo|to do|pending|offen\w*|unerledigt\w*)\b", re.I)
REACHED_CUE = re.compile(
    r"\b(?:reached|reach|hit|made it|achieved|done|complete|completed|finished|erreicht|"
    r"geschafft|abgeschlossen|fertig)\b",
    re.I,
)
MISSED_CUE = re.compile(
    r"\b(?:missed|miss|slipped|didn'?t make|did not make|verpasst|nicht geschafft|"
    r"nicht erreicht)\b",
    re.I,
)
APPROVE_CUE = re.compile(r"\b(?:approve|approved|genehmig\w*|freigeben|bestätig\w*)\b", re.I)

# Priority: phrases for low first, so "not urgent" is not read as "urgent".
PRIORITY_PHRASES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "low",
        re.compile(
            r"\b(?:low(?:[- ]prio(?:rity)?)?|not urgent|no rush|can wait|whenever|not important|"
            r"p3|niedrig\w*(?: priorität)?|nicht dringend|unwichtig|ha(?:t|ben) zeit|"
            r"kann warten|eilt nicht)\b",
            re.I,
        ),
    ),
    (
        "high",
        re.compile(
            r"\b(?:high(?:[- ]prio(?:rity)?)?|urgent|asap|important|top priority|critical|p1|"
            r"hohe[rn]? priorität|hoch|dringend|wichtig|eilig)\b",
            re.I,
        ),
    ),
    ("medium", re.compile(r"\b(?:medium|normal|p2|mittel\w*)\b", re.I)),
)
PRIORITY_DOWN = re.compile(
    r"\b(?:lower|decrease|reduce|deprioriti[sz]e|less urgent|senk\w*|runter\w*|"
    r"herabstufen|niedriger)\b",
    re.I,
)
PRIORITY_UP = re.compile(
    r"\b(?:raise|bump|increase|higher|more urgent|prioriti[sz]e|erhöh\w*|hochstufen|"
    r"höher)\b",
    re.I,
)
PRIORITY_WORD = re.compile(r"\b(?:priority|prio|priorität)\b", re.I)
STEPS = ("low", "medium", "high")

RENAME = (
    re.compile(r"\brename\s+(?P<what>.+?)\s+(?:to|into|as)\s+(?P<new>.+)$", re.I),
    re.compile(r"\bchange\s+the\s+(?:title|name)\s+of\s+(?P<what>.+?)\s+to\s+(?P<new>.+)$", re.I),
    re.compile(r"\bbenenn\w*\s+(?P<what>.+?)\s+um\s+(?:in|zu)\s+(?P<new>.+)$", re.I),
    re.compile(r"^(?P<what>.+?)\s+umbenennen\s+(?:in|zu)\s+(?P<new>.+)$", re.I),
)
# Verbs that start a new request inside a message ("… and move the SEO audit to friday").
SPLIT_VERBS = (
    "add|create|make|move|mark|set|push|delete|remove|rename|archive|remind|put|change|"
    "tick|cross|postpone|reschedule|write|jot|append|comment|approve|restore|finish|show|"
    "list|füge|füg|leg|lege|erstelle|erstell|markier|markiere|verschieb|verschiebe|lösch|"
    "lösche|setz|setze|hak|schreib|schreibe|zeig|zeige|benenne|archiviere"
)
FILLER_END = re.compile(
    r"(?:\s*\b(?:to|on|onto)\s+(?:my|the)\s+(?:to-?do\s+)?list|\s*\bauf\s+die\s+liste(?:\s+setzen)?|"
    r"\s+hinzufügen|\s+hinzu|\s+anlegen|\s+erstellen|\s+please|\s+bitte|\s+thanks|\s+now|"
    r"\s*,?\s*\bit'?s|\s+for me|\s+(?:as a )?(?:task|todo))\s*$",
    re.I,
)
ARTICLE = re.compile(r"^(?:a|an|the|der|die|das|den|dem|ein|eine|einen)\s+", re.I)
NOTE_CUE = re.compile(
    r"^(?:(?:please|pls|can you|could you|bitte)\b[\s,]*)*"
    r"(?:jot|note to self|write (?:this |that )?down|take a note|notier\w*|"
    r"schreib\w* (?:dir |mir )?auf)\b",
    re.I,
)
CHECKPOINT_CUE = re.compile(r"\b(?:reached|hit the|made it|achieved|erreicht)\b", re.I)
