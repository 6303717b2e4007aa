"""Generate the synthetic regulatory retrieval sample used by the offline quickstart.

The sample is a made-up rulebook of a fictional financial regulator (General Rules, Conduct of
Business, Prudential Rules, Anti-Money Laundering Rules, Market Rules and Collective Investment
Funds Rules) and the questions a compliance officer might ask about it. Every text below was
written for this project; nothing is taken from a real rulebook or an existing dataset.

It writes, in BEIR format, under samples/quickstart/:

    corpus.jsonl       {"_id", "title", "text"}: about 300 rules and guidance notes (40-120 words)
    queries.jsonl      {"_id", "text"}: about 400 questions that paraphrase the rules
    qrels/train.tsv    query-id, corpus-id, score (1): about 75% of the questions
    qrels/dev.tsv      the other questions; some dev passages have no train question
    train_pairs.jsonl  {"anchor", "positive"}: one per train judgement, where the positive is
                       the passage exactly as data.load_beir reads it ("title text")

Rules come from two sources: hand-written rules with their own questions, and templated
families (one rule per subject, e.g. one notification rule per notifiable event) whose
questions use plain-language paraphrases of the subject. Numbers, cross-references and some
boilerplate sentences are drawn from a seeded random generator, so the output is
byte-identical on every run. Re-run after editing this file with:

    python samples/make_quickstart.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 20240611
OUT_DIR = Path(__file__).resolve().parent / "quickstart"
DEV_SHARE = 0.25  # share of questions held out for dev
DEV_ONLY_SHARE = 0.10  # share of answered rules whose questions all go to dev
GUIDANCE_SHARE = 0.20  # share of rules that get a guidance note (a second relevant passage)
CITE_SHARE = 0.10  # share of questions that cite the rule number
PASSAGE_WORDS = (40, 120)

# ---------------------------------------------------------------- shared vocabulary

DEFAULT_SLOTS: dict[str, list[str]] = {
    "when": [
        "within 10 business days",
        "within 5 business days",
        "within 14 days",
        "within 30 days",
        "immediately and in any event within one Business Day",
        "as soon as practicable and no later than 72 hours",
    ],
    "years": ["5", "6", "7", "10"],
    "days": ["10", "14", "20", "30"],
    "pct": ["5%", "10%", "15%", "20%", "25%"],
    "freq": ["annually", "once every 12 months", "every six months", "twice a year"],
    "weeks": ["4", "8", "12"],
    "n": ["10", "15", "25"],
    "fee": ["100", "250", "500"],
    "months": ["6", "12"],
}

# Boilerplate that real rulebooks repeat; appended to short rules so that vocabulary overlaps.
ADDONS = [
    "Records demonstrating compliance with this Rule must be kept for at least {years} years and "
    "produced to the Regulator on request.",
    "The Governing Body remains responsible for compliance with this Rule where any related task is "
    "delegated to a Third Party Agent or to another member of the Group.",
    "A breach of this Rule may also be a breach of the Principles in {ref_principles} and may result in "
    "enforcement action by the Regulator.",
    "The Regulator may, on the written application of an Authorised Person, waive or modify this Rule "
    "in accordance with {ref_waivers}.",
    "In this Rule, Business Day has the meaning given in GEN 1.2.",
    "Nothing in this Rule limits the obligations of an Authorised Person under {xbook}.",
    "An Authorised Person must be able to demonstrate to the Regulator, on request, how it has "
    "complied with this Rule.",
]

GUIDANCE = [
    "The Regulator expects an Authorised Person to apply Rule {num} in a manner proportionate to the "
    "nature, scale and complexity of its business. In relation to {topic}, an Authorised Person should "
    "have written procedures, name a Relevant Person responsible for them, and retain evidence that the "
    "procedures have been followed and tested at least annually.",
    "Rule {num} does not prescribe any particular method for {topic}. An Authorised Person that relies on "
    "manual processes should, however, have compensating controls such as independent four-eyes review, "
    "and should escalate exceptions to its Compliance Officer without undue delay, recording how each "
    "exception was resolved.",
    "When assessing compliance with Rule {num}, the Regulator will consider whether Senior Management "
    "received regular management information on {topic} and whether issues identified were acted upon. "
    "Isolated minor errors that are promptly identified and corrected will not ordinarily lead to "
    "enforcement action.",
    "An Authorised Person that is a member of a Group may use Group-wide policies on {topic} to meet "
    "Rule {num}, provided the policies are adapted to these Rules and its Governing Body has formally "
    "adopted them. Any differences between the Group policy and these Rules should be documented.",
    "The Regulator considers that compliance with Rule {num} should form part of the Authorised Person's "
    "compliance monitoring programme. Common weaknesses observed in relation to {topic} include "
    "out-of-date procedures, insufficient staff training and a failure to record the reasons for decisions.",
    "Where an Authorised Person is uncertain how Rule {num} applies to {topic} in a particular case, it may "
    "seek individual guidance from the Regulator. Individual guidance is not binding on the Regulator, but "
    "the Regulator will take it into account when considering any subsequent breach.",
]

CITE_PREFIXES = ["Under {rule}, ", "According to {rule}, ", "Regarding {rule}: "]

# ---------------------------------------------------------------- templated families
# One rule per subject. Subject fields are named by "fields"; the last field, "q", holds
# "|"-separated plain-language paraphrases that the questions use instead of the rule's wording.

FAMILIES: list[dict] = [
    {
        "book": "GEN",
        "chapter": 1,
        "flat_section": 2,
        "title": "Definition of {t}",
        "fields": ("t", "s", "q"),
        "bodies": [
            "In these Rules, '{t}' means {s}. Where a Rule uses the term in relation to a particular "
            "Authorised Person, it is to be read accordingly.",
            "For the purposes of the Rulebook, a reference to {t} is a reference to {s}. This definition "
            "applies throughout the Rulebook unless the context otherwise requires.",
        ],
        "questions": [
            "What does the rulebook mean by {q}?",
            "How is {q} defined?",
            "Who or what counts as {q} under the rules?",
        ],
        "subjects": [
            (
                "Controller",
                "a person who, alone or with associates, holds 10% or more of the shares or voting "
                "power in an Authorised Person or its Holding Company, or is able to exercise significant influence "
                "over its management",
                "a controlling shareholder|someone with significant influence over a firm",
            ),
            (
                "Client Money",
                "money of any currency which an Authorised Person holds or controls on behalf of a "
                "Client in the course of carrying on a Regulated Activity, other than money immediately due and "
                "payable to the Authorised Person itself",
                "money a firm holds for its customers|cash we hold for customers",
            ),
            (
                "Retail Client",
                "any Client who has not been classified as a Professional Client or a Market "
                "Counterparty in accordance with COB 2",
                "an ordinary retail customer|a non-professional investor",
            ),
            (
                "Relevant Person",
                "a director, partner, Employee or appointed representative of an Authorised "
                "Person, or any individual whose services are placed at its disposal under an Outsourcing "
                "arrangement",
                "a firm's staff member or contractor|someone working for or on behalf of a firm",
            ),
            (
                "Business Day",
                "a day other than a Saturday, Sunday or public holiday on which banks in the State "
                "are open for general business",
                "a working day|a banking day",
            ),
            (
                "Durable Medium",
                "any instrument which enables a Client to store information addressed personally "
                "to that Client in a way accessible for future reference and which allows the unchanged "
                "reproduction of the information stored",
                "a permanent format for client documents|long-lasting paper or electronic storage",
            ),
            (
                "Large Exposure",
                "an exposure of an Authorised Person to a counterparty or group of connected "
                "counterparties whose value is equal to or exceeds 10% of its Capital Resources",
                "a big credit exposure to one borrower|concentrated lending",
            ),
            (
                "Politically Exposed Person",
                "an individual who is or has been entrusted with a prominent public "
                "function in any jurisdiction, such as a head of state, senior politician, senior judicial or "
                "military official or senior executive of a state-owned enterprise, and any family member or close "
                "associate of such an individual",
                "a PEP|a politician or senior public official",
            ),
            (
                "Financial Promotion",
                "any communication, in any form and by any means, which invites or induces a "
                "person to enter into an agreement in relation to a Financial Service or Financial Product",
                "marketing material|an advertisement for investment services",
            ),
            (
                "Group",
                "a Holding Company and all of its Subsidiaries, together with any entity in which any of "
                "them holds a participation of 20% or more",
                "a corporate group|a set of related companies",
            ),
            (
                "Beneficial Owner",
                "an individual who ultimately owns or controls, directly or indirectly, more "
                "than 25% of the shares or voting rights of a legal person, or who otherwise exercises control "
                "over its management",
                "the ultimate owner of a company|the real person behind a corporate client",
            ),
            (
                "Complaint",
                "any oral or written expression of dissatisfaction, whether justified or not, from or "
                "on behalf of a Client about the provision of a Financial Service by an Authorised Person",
                "a customer grievance|a client expressing dissatisfaction",
            ),
        ],
    },
    {
        "book": "GEN",
        "chapter": 3,
        "title": "Notification of {t}",
        "fields": ("t", "s", "q"),
        "bodies": [
            "An Authorised Person must notify the Regulator in writing of {s} {when}. The notification must "
            "describe the relevant circumstances, the expected effect on the Authorised Person's business and "
            "the remedial steps proposed, subject to {xref}.",
            "Where an Authorised Person becomes aware, or has information which reasonably suggests, that {s} "
            "has occurred or is likely to occur, it must give the Regulator written notice {when}. The notice "
            "must be signed by an Approved Individual and include copies of any relevant documents.",
            "{S} must be reported to the Regulator by the Authorised Person {when}, using the form published by "
            "the Regulator for that purpose and setting out the facts known at the time. Where any information "
            "notified later proves inaccurate, a corrected notification must be made within {days} days.",
        ],
        "questions": [
            "How quickly does a firm have to tell the regulator about {q}?",
            "When must we notify the regulator of {q}?",
            "What should a notice to the regulator about {q} contain?",
            "Is there a deadline for reporting {q} to the supervisor?",
            "Do we have to inform the regulator about {q}, and by when?",
        ],
        "subjects": [
            (
                "change in Controllers",
                "a proposed change in its Controllers",
                "a new shareholder acquiring control of the company|someone buying a controlling stake in us",
            ),
            (
                "loss of an Approved Individual",
                "the resignation or dismissal of an Approved Individual",
                "a senior licensed employee leaving their post|an approved person being fired or quitting",
            ),
            (
                "capital shortfall",
                "a breach of its Capital Requirement",
                "not holding enough regulatory capital|capital dropping below the required minimum",
            ),
            (
                "insolvency events",
                "the commencement of insolvency or winding-up proceedings against it or a member of its Group",
                "a group company going into liquidation|bankruptcy proceedings against an affiliate",
            ),
            (
                "Cyber Incidents",
                "a material Cyber Incident affecting its information systems",
                "a serious hacking attack on our IT|a major data security breach",
            ),
            (
                "change of name",
                "a change to its legal name or to any trading name",
                "renaming the company|starting to trade under a new brand name",
            ),
            (
                "change of auditor",
                "the removal or resignation of its External Auditor",
                "replacing our audit firm|the auditors stepping down",
            ),
            (
                "sanctions by other authorities",
                "any disciplinary sanction imposed on it by another financial services regulator",
                "being fined by a foreign supervisor|a penalty from an overseas regulator",
            ),
            (
                "systems failures",
                "a significant failure of its systems or controls",
                "a major breakdown in internal controls|a serious IT outage",
            ),
            (
                "cessation of business",
                "a decision to cease carrying on any Regulated Activity",
                "stopping one of our licensed business lines|winding down a regulated service",
            ),
            (
                "fraud by Employees",
                "any fraud or serious misconduct committed by an Employee",
                "staff stealing from the firm|an employee committing fraud",
            ),
            (
                "legal proceedings",
                "any significant civil or criminal proceedings brought against it",
                "being sued in court|a major lawsuit against the firm",
            ),
        ],
    },
    {
        "book": "GEN",
        "chapter": 4,
        "title": "{t} function",
        "fields": ("t", "d", "q"),
        "bodies": [
            "An Authorised Person must ensure that the {t} function is performed only by an individual who has "
            "been approved by the Regulator as an Approved Individual and who is ordinarily resident in the "
            "State. The role of the {t} is to {d}. The {t} must have direct access to the Governing Body.",
            "No individual may act as {t} of an Authorised Person without the prior approval of the Regulator "
            "under {xref}. The role of the {t} is to {d}. Where the {t} is absent, a temporary replacement may "
            "act for up to {weeks} weeks in any 12-month period, provided the Regulator is notified within "
            "{days} days.",
            "The role of the {t} of an Authorised Person is to {d}. The {t} must be an Approved Individual of "
            "sufficient seniority and must not perform any other function that could compromise the "
            "independence of the role, unless the Authorised Person has fewer than {n} Employees and the "
            "Regulator has agreed.",
        ],
        "questions": [
            "Does our {q} need regulator approval?",
            "What is the {q} responsible for?",
            "What are the requirements for appointing the {q}?",
            "Who can act as {q} of a licensed firm?",
        ],
        "subjects": [
            (
                "Senior Executive Officer",
                "exercise effective day-to-day management of the Authorised Person's business",
                "chief executive|CEO",
            ),
            (
                "Finance Officer",
                "oversee the financial affairs of the Authorised Person and the preparation of its prudential returns",
                "chief financial officer|head of finance",
            ),
            (
                "Compliance Officer",
                "monitor compliance with these Rules and report breaches to the Governing Body",
                "head of compliance|person running compliance",
            ),
            (
                "Money Laundering Reporting Officer",
                "receive internal suspicion reports and decide whether to file a Suspicious Activity Report",
                "MLRO|anti-money laundering officer",
            ),
            (
                "Risk Officer",
                "maintain the risk management framework and escalate risks exceeding the approved risk appetite",
                "chief risk officer|head of risk",
            ),
            (
                "Head of Internal Audit",
                "provide independent assurance on the adequacy of systems and controls",
                "chief internal auditor|internal audit head",
            ),
            (
                "Licensed Director",
                "exercise independent judgement as a member of the Governing Body",
                "board director|director sitting on the board",
            ),
            (
                "Client Assets Officer",
                "oversee the safeguarding of Client Money and Client Investments",
                "person responsible for client assets|client money oversight officer",
            ),
        ],
    },
    {
        "book": "GEN",
        "chapter": 5,
        "title": "Records of {t}",
        "fields": ("t", "s", "q"),
        "bodies": [
            "An Authorised Person must make and retain {s} for at least {years} years from the date on which "
            "each record was created. Records must be kept in a Durable Medium and be capable of being produced "
            "to the Regulator within {n} business days of a request.",
            "{S} must be maintained by an Authorised Person in a form that allows the Regulator to reconstruct "
            "each relevant step. Subject to {xref}, such records must be retained for not less than {years} "
            "years, or longer where the Regulator so directs in writing.",
            "An Authorised Person must ensure that {s} are complete, accurate and readily retrievable. It must "
            "retain them for at least {years} years after the end of the relevant Client relationship and must "
            "not destroy them while any Complaint or investigation concerning them is outstanding.",
        ],
        "slots": {"n": ["2", "3", "5"]},
        "questions": [
            "How long do we need to keep {q}?",
            "What is the minimum retention period for {q}?",
            "In what form should {q} be kept, and for how long?",
            "Can a firm throw away {q} after a few years?",
        ],
        "subjects": [
            (
                "Client orders",
                "records of every Client order and instruction received",
                "customer trading instructions|the client orders we receive",
            ),
            (
                "communications",
                "recordings of telephone conversations and electronic communications relating to transactions",
                "taped phone calls with clients|recorded calls and chat messages about trades",
            ),
            (
                "Financial Promotions",
                "records of each Financial Promotion it communicates or approves",
                "copies of marketing material we sent out|adverts we approved",
            ),
            (
                "Complaints",
                "records of each Complaint and of the measures taken to resolve it",
                "customer complaint files|details of complaints and how they were handled",
            ),
            (
                "training",
                "records of the training and competence assessments of its Employees",
                "staff training logs|evidence of employee competence checks",
            ),
            (
                "Governing Body meetings",
                "minutes of meetings of its Governing Body and its committees",
                "board meeting minutes|minutes of board committees",
            ),
            (
                "suitability assessments",
                "records of each suitability assessment carried out for a Client",
                "suitability checks done on customers|documents showing why advice was suitable",
            ),
            (
                "conflicts of interest",
                "records of each conflict of interest identified and of the steps taken to manage it",
                "the conflicts of interest register|our log of conflicts",
            ),
            (
                "Outsourcing",
                "records of its Outsourcing arrangements and of their periodic reviews",
                "contracts with outsourced service providers|vendor review files",
            ),
            (
                "breaches",
                "records of every breach of these Rules identified by its compliance function",
                "the breach log|compliance breaches we found",
            ),
        ],
    },
    {
        "book": "GEN",
        "chapter": 7,
        "title": "{t}",
        "fields": ("t", "s", "q"),
        "bodies": [
            "An Authorised Person must establish and maintain {s} appropriate to the nature, scale and "
            "complexity of its business. The Governing Body must approve it and review its effectiveness at "
            "least {freq}. Any material deficiency must be remedied promptly and reported to the Regulator if "
            "not remedied within {days} days.",
            "The Governing Body of an Authorised Person is responsible for ensuring that the Authorised Person "
            "has {s}, which must be documented, adequately resourced and independent of the business it "
            "oversees. It must be reviewed at least {freq}, and the results of each review must be reported to "
            "Senior Management within {days} days.",
            "{S} must be approved by the Governing Body and tested at least {freq}, subject to {xref}. Where a "
            "test reveals a weakness, the Authorised Person must record the weakness, the Relevant Person "
            "responsible for remedying it and the date by which it will be remedied.",
        ],
        "questions": [
            "How often must the board review {q}?",
            "Who is responsible for making sure the firm has {q}?",
            "Do we need {q}, and how often must that be checked?",
            "What happens if weaknesses are found in {q}?",
        ],
        "subjects": [
            ("Compliance function", "a compliance function", "a compliance department|a team that monitors compliance"),
            ("Risk management function", "a risk management function", "a risk team|independent risk oversight"),
            ("Internal audit function", "an internal audit function", "an internal audit team|in-house auditors"),
            (
                "Business continuity",
                "a business continuity and disaster recovery plan",
                "a disaster recovery plan|a plan to keep running after an outage",
            ),
            (
                "Whistleblowing",
                "whistleblowing procedures which allow Employees to report concerns confidentially",
                "a speak-up policy for staff|a way for employees to raise concerns anonymously",
            ),
            (
                "Remuneration policy",
                "a remuneration policy consistent with effective risk management",
                "a bonus and pay policy|rules on staff pay",
            ),
            (
                "Information security",
                "an information security policy covering access controls and the protection of Client data",
                "cyber security policies|IT security controls",
            ),
            (
                "Outsourcing policy",
                "an outsourcing policy governing the selection and oversight of service providers",
                "a policy on using outside vendors|controls over outsourced suppliers",
            ),
        ],
    },
    {
        "book": "COB",
        "chapter": 3,
        "title": "Client Agreement for {t}",
        "fields": ("t", "s", "c", "q"),
        "bodies": [
            "Before providing {s} to a Retail Client, an Authorised Person must enter into a written Client "
            "Agreement signed by the Client. In addition to the general terms required by {xref}, the Client "
            "Agreement must set out {c}. The Authorised Person must give the Client at least {days} days' "
            "written notice of any change to these terms.",
            "An Authorised Person must not provide {s} to a Retail Client unless a Client Agreement is in place "
            "which sets out {c}. The agreement must be provided in good time before the service begins, in a "
            "Durable Medium, and any amendment must be notified to the Client no less than {days} days before it "
            "takes effect.",
        ],
        "questions": [
            "What must the client agreement cover for {q}?",
            "Do we need a signed contract with a retail customer before {q}?",
            "How much notice must customers get before we change the terms for {q}?",
            "What terms have to be agreed with an ordinary investor for {q}?",
        ],
        "subjects": [
            (
                "discretionary portfolio management",
                "discretionary portfolio management services",
                "the investment objectives, any restrictions on the types of Investments or markets, the benchmark "
                "against which performance will be measured and the basis of the management fee",
                "managing a client's portfolio at our discretion|discretionary investment management",
            ),
            (
                "execution-only dealing",
                "execution-only dealing services",
                "a statement that the Authorised Person will not assess the suitability of any transaction, the "
                "execution venues used and the commission payable on each trade",
                "order-taking without advice|dealing on an execution-only basis",
            ),
            (
                "investment advice",
                "investment advice",
                "whether the advice is independent or restricted, the range of products considered, and the fees "
                "payable for the advice and for any ongoing review",
                "recommending investments|giving investment advice",
            ),
            (
                "custody",
                "custody services",
                "the arrangements for holding Client Investments, the use of any sub-custodian, the frequency of "
                "statements and the circumstances in which the Authorised Person may claim a lien",
                "safekeeping of client securities|holding assets in custody",
            ),
            (
                "margin trading",
                "margin trading or other leveraged dealing",
                "the initial and maintenance margin requirements, the circumstances in which positions may be "
                "closed out without prior notice and the Client's liability for losses exceeding the margin deposited",
                "leveraged trading on margin|trading with borrowed money",
            ),
            (
                "credit facilities",
                "credit facilities, including lending secured on Investments",
                "the interest rate and how it is calculated, the security taken, the events of default and the "
                "Client's right to repay early",
                "lending to clients against their portfolio|loans secured on investments",
            ),
            (
                "corporate finance",
                "corporate finance advice",
                "the scope of the mandate, the fee structure including any success fee, the management of conflicts "
                "of interest and the treatment of confidential information",
                "advising companies on deals|corporate finance work",
            ),
            (
                "Crowdfunding",
                "Crowdfunding platform services",
                "how investments are selected for the platform, the Client's investment limits, the arrangements "
                "if the platform ceases to operate and the cooling-off period",
                "investment-based crowdfunding|using a crowdfunding platform",
            ),
        ],
    },
    {
        "book": "COB",
        "chapter": 4,
        "title": "Suitability of {t}",
        "fields": ("t", "s", "q"),
        "slots": {"years": ["1", "2", "3"], "pct": ["10%", "20%", "25%", "30%"]},
        "bodies": [
            "An Authorised Person must not recommend {s} to a Retail Client unless it has assessed, on the basis "
            "of information obtained about the Client's knowledge and experience, financial situation and "
            "investment objectives, that the product is suitable for that Client. Where the Client has less than "
            "{years} years' experience of comparable products, it must give a prominent written risk warning. "
            "The Client's total investment in such products must not exceed {pct} of their net liquid assets.",
            "Where an Authorised Person arranges or deals in {s} for a Retail Client, it must first carry out a "
            "suitability assessment under {xref} and record the reasons for its conclusion. A Retail Client's "
            "aggregate investment in such products must not exceed {pct} of the Client's net liquid assets "
            "unless the Client confirms in writing that they understand the risks of a higher concentration. A "
            "Client with less than {years} years' relevant experience must also receive a written risk warning.",
        ],
        "questions": [
            "What checks do we need before selling {q} to an ordinary customer?",
            "Is there a cap on how much of a retail investor's wealth can go into {q}?",
            "Does an inexperienced client need a risk warning before investing in {q}?",
            "Can we recommend {q} to a retail client?",
        ],
        "subjects": [
            ("Contracts for Difference", "Contracts for Difference", "CFDs|leveraged bets on share price movements"),
            (
                "Structured Products",
                "Structured Products where capital is at risk",
                "structured notes that may not return the original investment|capital-at-risk structured investments",
            ),
            ("Foreign Funds", "Units in a Foreign Fund", "overseas investment funds|funds domiciled abroad"),
            ("warrants", "warrants and other securitised Derivatives", "covered warrants|securitised derivatives"),
            (
                "exchange-traded Derivatives",
                "options, futures and other exchange-traded Derivatives",
                "options and futures|listed derivatives",
            ),
            (
                "illiquid Funds",
                "Units in a Property Fund or other Fund with redemption intervals exceeding one month",
                "real estate funds that are hard to sell|funds with infrequent redemptions",
            ),
            (
                "subordinated debt",
                "subordinated or contingent convertible debt securities",
                "CoCo bonds|junior bonds that can convert into shares",
            ),
            (
                "private equity",
                "unlisted shares and other private equity investments",
                "shares in private companies|private equity stakes",
            ),
        ],
    },
    {
        "book": "COB",
        "chapter": 5,
        "title": "Financial Promotions: {t}",
        "fields": ("t", "s", "c", "q"),
        "bodies": [
            "An Authorised Person must ensure that {s} are clear, fair and not misleading and have been approved "
            "by an appropriately senior Relevant Person before they are communicated. In addition, {c}. A copy of "
            "each such promotion, with the record of its approval, must be retained for {years} years.",
            "{S} must comply with the general requirements in {xref}. In addition, {c}. The Compliance Officer "
            "must review such promotions at least every {months} months to confirm that they remain accurate, "
            "and must withdraw any promotion that no longer complies.",
        ],
        "questions": [
            "What are the rules for {q}?",
            "What extra requirements apply to {q}?",
            "Who has to sign off {q}?",
            "Are there special conditions for {q}?",
        ],
        "subjects": [
            (
                "social media",
                "Financial Promotions communicated through social media",
                "each individual post must be compliant on its own and must include a risk warning, or a link to "
                "one where character limits apply",
                "adverts on social media|marketing posts on Instagram",
            ),
            (
                "Foreign Funds",
                "Financial Promotions relating to Foreign Funds",
                "the promotion must state that the Fund is not supervised by the Regulator and must name the Fund's "
                "home regulator",
                "marketing overseas funds|adverts for a fund from another country",
            ),
            (
                "past performance",
                "Financial Promotions which include past performance information",
                "the information must cover the preceding five complete years, or the whole period since launch if "
                "shorter, and must state that past performance is not a reliable indicator of future results",
                "marketing that shows historic returns|performance track records in adverts",
            ),
            (
                "unsolicited calls",
                "unsolicited real-time Financial Promotions, including cold calls and visits",
                "they may only be made to existing Clients or Professional Clients, and only between 9 am and 8 pm "
                "on a Business Day",
                "cold calls to potential customers|unsolicited phone calls selling investments",
            ),
            (
                "approval for others",
                "Financial Promotions which it approves on behalf of persons who are not Authorised Persons",
                "the Authorised Person must have the competence to assess the promotion and "
                "must monitor it for as long as it is in use",
                "adverts we approve for unregulated companies|marketing we sign off for an unlicensed firm",
            ),
            (
                "comparisons",
                "Financial Promotions which compare one Financial Product with another",
                "the comparison must be meaningful, present the products in a fair and balanced way and state the "
                "sources of the information used",
                "adverts comparing our product with competitors|comparative marketing",
            ),
            (
                "Crypto Tokens",
                "Financial Promotions of Crypto Tokens",
                "the promotion must contain the risk warning prescribed by the Regulator that the Client may lose "
                "all the money invested",
                "crypto adverts|marketing for digital coins",
            ),
            (
                "Professional Clients only",
                "Financial Promotions directed only at Professional Clients",
                "the promotion must state clearly that it is not intended for Retail Clients, and the Authorised "
                "Person must have controls to prevent Retail Clients from acting on it",
                "marketing aimed only at professional investors|institutional-only promotions",
            ),
        ],
    },
    {
        "book": "COB",
        "chapter": 11,
        "title": "Client reporting: {t}",
        "fields": ("t", "s", "w", "c", "q"),
        "bodies": [
            "An Authorised Person must provide to each Client {s} {w}. The report must be provided in a Durable "
            "Medium and must include {c}. A Professional Client may agree in writing to receive such reports "
            "less frequently or in summary form.",
            "Subject to {xref}, an Authorised Person must send to each Retail Client {s} {w}, setting out {c}. "
            "Where the Client has agreed, the report may be provided through a secure online facility, provided "
            "the Client is notified each time a new report is available.",
        ],
        "questions": [
            "How often do clients have to receive {q}?",
            "What information goes into {q}?",
            "When must we send customers {q}?",
        ],
        "subjects": [
            (
                "trade confirmations",
                "a trade confirmation for each transaction executed on its behalf",
                "no later than the first Business Day following execution",
                "the date and time of execution, the venue, the price, the total consideration and the commission "
                "and charges",
                "confirmation of a trade|a contract note",
            ),
            (
                "portfolio statements",
                "a periodic statement of each portfolio managed on a discretionary basis",
                "at least once every three months",
                "the composition and valuation of the portfolio, the fees and "
                "charges incurred and a comparison of performance with the agreed benchmark",
                "reports on discretionary portfolios|statements for managed accounts",
            ),
            (
                "client asset statements",
                "a statement of the Client Money and Client Investments held for it",
                "at least quarterly",
                "each asset held, its market value, the amount of Client Money held and any "
                "assets subject to a security interest",
                "statements of client assets|a report of cash and securities held for a customer",
            ),
            (
                "depreciation reports",
                "a notification where the value of a leveraged portfolio falls by 10% or more since the last statement",
                "no later than the end of the Business Day on which the threshold is exceeded",
                "the current value of the portfolio, the positions affected and the margin available",
                "an alert when a leveraged account loses value|loss warnings on margin accounts",
            ),
            (
                "costs and charges",
                "an annual statement of all costs and charges incurred in connection with its services",
                "within one month of the end of each calendar year",
                "the aggregated total in cash and "
                "as a percentage of the amount invested, split between service costs, product costs and third-party "
                "payments",
                "an annual fees summary|a statement of charges paid",
            ),
            (
                "Unitholder statements",
                "a statement of its holding in each Fund the Authorised Person operates",
                "at least every six months",
                "the number of Units held, their value and any distributions paid or reinvested during the period",
                "statements to fund investors|reports to unitholders",
            ),
        ],
    },
    {
        "book": "PRU",
        "chapter": 2,
        "title": "Base capital for Category {t}",
        "fields": ("t", "s", "amt", "q"),
        "bodies": [
            "An Authorised Person in Category {t}, being a firm whose Licence permits {s}, must at all times "
            "maintain Capital Resources of not less than its Capital Requirement. Its Capital Requirement is the "
            "higher of a Base Capital Requirement of {amt} and the sum of the risk capital components calculated "
            "under {ref_credit_risk} and the following Rules.",
            "The Base Capital Requirement for a Category {t} Authorised Person, whose Licence permits {s}, is "
            "{amt}. Where its Capital Resources fall below 120% of its Capital Requirement, the Authorised Person "
            "must notify the Regulator within 5 business days and explain how it intends to maintain adequate "
            "capital.",
        ],
        "questions": [
            "What is the minimum capital for a firm that {q}?",
            "How much base capital does a category {t} firm need?",
            "What capital requirement applies to a licensed firm that {q}?",
        ],
        "subjects": [
            ("1", "accepting deposits or providing credit", "USD 10 million", "takes deposits|operates as a bank"),
            (
                "2",
                "dealing in Investments as principal",
                "USD 2 million",
                "trades on its own account|deals using its own balance sheet",
            ),
            (
                "3A",
                "dealing in Investments as matched principal or executing orders as agent",
                "USD 500,000",
                "acts as a matched principal broker|executes client orders as agent",
            ),
            (
                "3B",
                "providing custody of Client Investments",
                "USD 4 million",
                "acts as a custodian|safeguards client assets",
            ),
            (
                "3C",
                "managing assets or Collective Investment Funds",
                "USD 150,000",
                "runs investment funds|manages portfolios for clients",
            ),
            (
                "4",
                "arranging deals or advising on Financial Products without holding Client Assets",
                "USD 10,000",
                "only arranges deals or gives advice|is an adviser that doesn't hold client money",
            ),
            (
                "5",
                "operating a Crowdfunding platform",
                "USD 50,000",
                "runs a crowdfunding platform|operates a peer-to-peer lending website",
            ),
        ],
    },
    {
        "book": "PRU",
        "chapter": 7,
        "title": "{t}",
        "fields": ("t", "s", "w", "q"),
        "bodies": [
            "An Authorised Person must submit {s} to the Regulator {w}. The return must be prepared in accordance "
            "with the Regulator's reporting instructions, approved by the Finance Officer and filed through the "
            "Regulator's electronic portal. A return submitted late incurs a late filing fee of USD {fee} for "
            "each Business Day of delay.",
            "{S} must be submitted to the Regulator by each Authorised Person to which this section applies {w}, "
            "subject to {xref}. Where an Authorised Person becomes aware that a submitted return contained a "
            "material error, it must submit a corrected return within {n} business days.",
        ],
        "questions": [
            "When is the {q} due?",
            "What is the filing deadline for the {q}?",
            "How do we submit the {q} to the regulator?",
        ],
        "subjects": [
            (
                "Capital Adequacy Return",
                "a Capital Adequacy Return",
                "within 30 days of the end of each quarter",
                "capital adequacy report|quarterly capital return",
            ),
            (
                "Annual Audited Accounts",
                "its annual audited financial statements",
                "within 4 months of its financial year end",
                "audited annual accounts package|set of annual financial statements",
            ),
            (
                "Large Exposures Return",
                "a Large Exposures Return",
                "within 20 business days of each quarter end",
                "report on big counterparty exposures|concentration risk return",
            ),
            (
                "Liquidity Return",
                "a Liquidity Return",
                "within 15 business days of the end of each month",
                "monthly liquidity report|liquidity reporting form",
            ),
            (
                "Controllers Report",
                "an annual report listing each of its Controllers and their holdings",
                "within 4 months of its financial year end",
                "list of controlling shareholders|annual report on who controls the firm",
            ),
            (
                "Client Money Return",
                "a Client Money and Client Investments Return",
                "within 15 business days of the end of each month",
                "monthly client assets report|return on money and securities held for clients",
            ),
            (
                "Group Capital Return",
                "a Group Capital Adequacy Return for its Financial Group",
                "within 45 days of the end of each half year",
                "group-wide capital report|consolidated capital return",
            ),
        ],
    },
    {
        "book": "AML",
        "chapter": 6,
        "title": "Enhanced Due Diligence: {t}",
        "fields": ("t", "s", "c", "q"),
        "slots": {"freq": ["annually", "every six months", "once every 12 months"]},
        "bodies": [
            "Where {s}, an Authorised Person must apply Enhanced Customer Due Diligence in addition to the "
            "measures in {ref_cdd_measures}, including {c}. The approval of Senior Management must be obtained "
            "before the business relationship is established or continued, and the relationship must be reviewed "
            "at least {freq}.",
            "An Authorised Person must treat a business relationship as high risk where {s}. In such a case, "
            "Enhanced Customer Due Diligence must include {c}, and the relationship must be subject to enhanced "
            "ongoing monitoring, with a review of the customer file at least {freq} and sign-off by Senior "
            "Management.",
        ],
        "questions": [
            "What extra checks are needed when {q}?",
            "Who must approve taking on a customer if {q}?",
            "How often should we review the relationship where {q}?",
            "Is enhanced due diligence required when {q}?",
        ],
        "subjects": [
            (
                "Politically Exposed Persons",
                "a customer or Beneficial Owner is a Politically Exposed Person",
                "establishing the source of wealth and the source of funds",
                "the client is a senior politician|a customer holds high public office",
            ),
            (
                "High Risk Jurisdictions",
                "a customer is established in a jurisdiction identified by the Regulator as a High Risk Jurisdiction",
                "obtaining additional information on the intended nature of the "
                "relationship and the reasons for transactions",
                "a client is based in a high-risk country|the customer comes from a blacklisted country",
            ),
            (
                "correspondent banking",
                "it provides correspondent banking services to a respondent institution outside the State",
                "assessing the respondent's anti-money laundering controls and documenting "
                "the responsibilities of each institution",
                "we offer correspondent accounts to foreign banks|a foreign bank wants a correspondent relationship",
            ),
            (
                "complex structures",
                "a customer has an unusually complex ownership structure with no apparent economic purpose",
                "obtaining a structure chart certified by a director and verifying each intermediate entity",
                "a company has layers of holding companies|ownership runs through several offshore vehicles",
            ),
            (
                "non-face-to-face business",
                "a customer is not physically present for identification purposes",
                "using certified copies of documents, video verification or a first payment from an account in the "
                "customer's name",
                "we onboard a customer remotely|the client never meets us in person",
            ),
            (
                "trusts and foundations",
                "a customer is a trust, foundation or similar arrangement",
                "identifying the settlor, trustees, protector and beneficiaries and obtaining a copy of the trust deed",
                "the customer is a trust|a family foundation opens an account",
            ),
            (
                "cash-intensive businesses",
                "a customer carries on a cash-intensive business",
                "verifying the expected volume of cash deposits and monitoring deviations from it",
                "the client runs a business dealing mostly in cash|a customer deposits lots of cash",
            ),
            (
                "private banking",
                "it provides private banking services to high net worth individuals",
                "corroborating the customer's source of wealth with independent evidence",
                "we provide private banking to wealthy individuals|a high net worth individual uses our private bank",
            ),
        ],
    },
    {
        "book": "CIF",
        "chapter": 5,
        "title": "Investment limits: {t}",
        "fields": ("t", "s", "q"),
        "slots": {
            "when": ["5 business days", "one month", "10 business days", "three months"],
            "pct": ["5%", "10%", "20%", "30%"],
        },
        "bodies": [
            "The Fund Manager of a Public Fund must ensure that {s} does not exceed {pct} of the Net Asset Value "
            "of the Fund. Where the limit is exceeded for reasons beyond the Fund Manager's control, such as "
            "market movements or redemptions, it must take the steps necessary to rectify the position within "
            "{when}, having regard to the interests of Unitholders.",
            "Subject to {xref}, {s} in a Public Fund is limited to {pct} of its Net Asset Value, measured at the "
            "time of each acquisition. A breach of this limit must be recorded, notified to the Eligible "
            "Custodian and remedied within {when}, and the Regulator must be informed if it is not remedied "
            "within that period.",
        ],
        "questions": [
            "What is the limit on {q} for a public fund?",
            "What happens if a public fund goes over its limit on {q}?",
            "How long does a fund manager have to fix a breach of the limit on {q}?",
            "Is there a cap on {q} in a retail fund?",
        ],
        "subjects": [
            (
                "single issuer",
                "the value of Transferable Securities issued by any single issuer",
                "securities of one company|holdings in a single issuer",
            ),
            ("borrowing", "borrowing by the Fund", "fund borrowing|how much a fund can borrow"),
            (
                "Derivatives",
                "the global exposure of the Fund to Derivatives",
                "derivatives use|leverage through derivatives",
            ),
            (
                "unlisted securities",
                "investment in securities not admitted to trading on a Regulated Exchange",
                "unquoted shares|unlisted investments",
            ),
            (
                "other Funds",
                "investment in Units of other Collective Investment Funds",
                "fund-of-funds holdings|investing in other funds",
            ),
            ("deposits", "the amount deposited with any single bank", "cash held at one bank|bank deposits"),
            (
                "counterparty exposure",
                "exposure to any single counterparty in over-the-counter Derivatives",
                "OTC derivative counterparty risk|exposure to one swap counterparty",
            ),
        ],
    },
]

# ---------------------------------------------------------------- hand-written rules
# (title, body, questions) or (title, body, questions, key); the key makes "{ref_KEY}" available
# to every template as the rule's number.

HANDWRITTEN: list[dict] = [
    {
        "book": "GEN",
        "chapter": 2,
        "rules": [
            (
                "Application fees",
                "A person applying for a Licence must pay the application fee specified in App 1 at "
                "the time of making the application, which ranges from USD 5,000 for Category 4 to USD 70,000 for "
                "Category 1. The fee is not refundable if the application is withdrawn by the applicant or refused by "
                "the Regulator.",
                (
                    "Is the licence application fee refunded if we withdraw?",
                    "How much does it cost to apply for a licence?",
                ),
            ),
            (
                "Annual fees",
                "An Authorised Person must pay an annual fee to the Regulator by 15 January in each year. "
                "Where the Authorised Person is authorised part way through a year, the annual fee is reduced pro rata "
                "according to the number of whole months remaining in that year.",
                ("When is the yearly regulatory fee due?", "Do newly licensed firms pay the full annual fee?"),
            ),
            (
                "Late payment of fees",
                "Where any fee is not paid within 30 days of the due date, the Regulator may "
                "charge an additional administrative fee of 1% of the amount outstanding for each month or part of a "
                "month. Persistent non-payment may be treated as grounds for withdrawal of the Licence.",
                ("What penalty applies for paying regulatory fees late?",),
            ),
            (
                "Waivers and modifications",
                "The Regulator may, on the application of an Authorised Person, waive or "
                "modify a Rule if it is satisfied that compliance would be unduly burdensome or would not achieve the "
                "purpose of the Rule, and that the waiver would not adversely affect the Regulator's objectives. A "
                "waiver may be granted for up to 3 years and may be subject to conditions.",
                ("Can a firm ask to be exempted from a particular rule?", "For how long can a rule waiver last?"),
                "waivers",
            ),
            (
                "Fit and proper requirements",
                "An Authorised Person must ensure that each Approved Individual and "
                "Relevant Person is fit and proper, having regard to their honesty, integrity, competence and financial "
                "soundness. It must carry out reference checks covering the previous 5 years and a criminal records "
                "check before appointment, and must reassess fitness at least annually.",
                (
                    "What background checks are needed before hiring someone into a senior role?",
                    "How often must staff be reassessed as fit and proper?",
                ),
            ),
            (
                "Principles for Authorised Persons",
                "An Authorised Person must observe high standards of integrity and "
                "fair dealing, act with due skill, care and diligence, maintain adequate resources, and deal with the "
                "Regulator in an open and cooperative way, disclosing anything of which the Regulator would reasonably "
                "expect notice. These Principles apply in addition to every other Rule.",
                (
                    "What are the core principles every licensed firm must follow?",
                    "Does a firm have to volunteer information to the regulator without being asked?",
                ),
                "principles",
            ),
        ],
    },
    {
        "book": "GEN",
        "chapter": 8,
        "rules": [
            (
                "Outsourcing requirements",
                "An Authorised Person which outsources any function remains fully "
                "responsible for compliance with these Rules. Before entering into a Material Outsourcing arrangement, "
                "it must carry out due diligence on the service provider, ensure that the contract gives the Regulator "
                "access to data and premises, and notify the Regulator at least 30 days in advance.",
                (
                    "Is the firm still responsible for a function it has outsourced?",
                    "How far in advance must the regulator hear about an important outsourcing?",
                ),
                "outsourcing",
            ),
            (
                "Outsourcing contracts",
                "A Material Outsourcing contract must set out the service levels, the service "
                "provider's obligations on confidentiality and data security, termination rights including termination "
                "at the direction of the Regulator, business continuity arrangements, and a prohibition on "
                "sub-outsourcing without the Authorised Person's prior consent.",
                ("What should a contract with an outsourcing provider include?",),
            ),
            (
                "Intra-group outsourcing",
                "Where an Authorised Person outsources a function to a member of its Group, "
                "the requirements of {ref_outsourcing} apply, but the Authorised Person may take the Group's control "
                "environment into account in its due diligence. The arrangement must still be documented in a written "
                "service level agreement.",
                ("Do the outsourcing rules apply when a function moves to another group company?",),
            ),
            (
                "Cloud outsourcing",
                "An Authorised Person using cloud computing services for a Material Outsourcing "
                "must ensure that Client data is encrypted in transit and at rest, must know the countries in which the "
                "data is stored, and must have an exit strategy allowing it to migrate the data to another provider "
                "within 90 days without disruption to its services.",
                (
                    "What are the requirements for storing client data with a cloud provider?",
                    "How quickly must a firm be able to move its data off a cloud service?",
                ),
            ),
        ],
    },
    {
        "book": "COB",
        "chapter": 2,
        "rules": [
            (
                "Default classification",
                "An Authorised Person must treat every Client as a Retail Client unless it has "
                "classified the Client as a Professional Client or a Market Counterparty in accordance with this "
                "chapter. Before providing a Financial Service, it must notify the Client in writing of its "
                "classification, of any right to request a different classification and of any protections the Client "
                "would lose as a result.",
                (
                    "If we haven't assessed a new customer, how should they be treated by default?",
                    "Must clients be told in writing which category they have been put in?",
                ),
            ),
            (
                "Individual Professional Clients",
                "An Authorised Person may classify an individual as a Professional "
                "Client only if the individual has net assets of at least USD 1 million, excluding the value of their "
                "principal residence, and the Authorised Person has assessed that the individual has sufficient "
                "knowledge and experience of the relevant Financial Products. The assessment must be documented.",
                (
                    "What wealth threshold does a private individual need to meet to be treated as professional?",
                    "Can a rich individual investor be treated as a professional client?",
                ),
                "prof_individual",
            ),
            (
                "Large undertakings",
                "An undertaking is a Professional Client where it meets at least two of the "
                "following on the date of its latest financial statements: (a) a balance sheet total of USD 20 million; "
                "(b) a net annual turnover of USD 40 million; (c) own funds or called-up capital of USD 2 million. An "
                "undertaking which is a member of a Group may rely on the consolidated figures of its Holding Company.",
                (
                    "What size tests decide whether a company counts as a professional client?",
                    "Can a subsidiary use its parent's group accounts to qualify as professional?",
                ),
            ),
            (
                "Market Counterparties",
                "An Authorised Person may classify as a Market Counterparty another Authorised "
                "Person, a regulated financial institution, a government, central bank or supranational organisation, "
                "or a Professional Client with own funds exceeding USD 50 million which has expressly consented in "
                "writing. A Market Counterparty classification applies only to dealing, arranging and execution-only "
                "services.",
                (
                    "Which institutions can be treated as market counterparties?",
                    "Does a market counterparty classification cover investment advice?",
                ),
            ),
            (
                "Request for Retail Client treatment",
                "A Professional Client or Market Counterparty may at any time "
                "request to be treated as a Retail Client, either generally or in respect of a particular service or "
                "product. The Authorised Person must give effect to such a request within 10 business days and must "
                "not charge any fee for doing so.",
                (
                    "How quickly must we act when a professional investor asks to be treated as retail?",
                    "Can a firm charge a client for switching them to retail status?",
                ),
            ),
            (
                "Review of classification",
                "An Authorised Person must review each Professional Client classification at "
                "least once every three years and whenever it becomes aware that a Client no longer meets the criteria "
                "in {ref_prof_individual}. Where a Client ceases to qualify, the Authorised Person must reclassify the "
                "Client as a Retail Client and inform the Client within 5 business days.",
                (
                    "How often should professional client status be re-checked?",
                    "What happens when a customer no longer meets the professional criteria?",
                ),
            ),
        ],
    },
    {
        "book": "COB",
        "chapter": 6,
        "rules": [
            (
                "Gifts and hospitality",
                "An Authorised Person must maintain a register of gifts and hospitality given "
                "or received by Relevant Persons. Any single gift or item of hospitality with a value exceeding USD 250, "
                "or gifts from the same source exceeding USD 1,000 in a calendar year, must be approved in advance by the "
                "Compliance Officer and recorded in the register within 5 business days.",
                (
                    "Above what value do presents to staff need compliance sign-off?",
                    "Do we need to keep a log of client entertainment?",
                ),
            ),
            (
                "Personal account dealing",
                "A Relevant Person must obtain prior written clearance from the Compliance "
                "Officer before dealing for their own account in any Investment, and must hold any Investment so "
                "acquired for at least 30 days. Clearance is valid for 2 business days. A Relevant Person must not deal "
                "in any Investment on the Authorised Person's restricted list.",
                (
                    "Do employees need permission before trading shares in their personal account?",
                    "How long must staff hold investments they bought for themselves?",
                ),
            ),
            (
                "Inducements",
                "An Authorised Person providing investment advice to a Retail Client must not accept any "
                "fee, commission or non-monetary benefit from a third party in relation to that advice, other than minor "
                "non-monetary benefits capable of enhancing the quality of the service. Any such fee received must be "
                "passed to the Client in full within 30 days.",
                (
                    "Can an adviser keep commission paid by a product provider?",
                    "What happens to commission received from fund houses on advised sales?",
                ),
            ),
            (
                "Remuneration of sales staff",
                "An Authorised Person must not remunerate or assess any Relevant Person "
                "who deals with Retail Clients in a way that conflicts with its duty to act in the Client's best "
                "interests. Variable pay linked to sales volumes must not exceed 50% of fixed pay and must be subject to "
                "quality criteria, such as Complaint levels and suitability file reviews.",
                (
                    "Is there a cap on sales bonuses for staff dealing with retail customers?",
                    "Can advisers be paid purely on the volume of products they sell?",
                ),
            ),
            (
                "Disclosure of conflicts",
                "Where the arrangements of an Authorised Person are not sufficient to ensure, "
                "with reasonable confidence, that risks of damage to Client interests will be prevented, it must clearly "
                "disclose the general nature and sources of the conflict to the Client in a Durable Medium before "
                "undertaking business. Disclosure is a measure of last resort and does not relieve the Authorised Person "
                "of its other obligations.",
                (
                    "Is telling the client about a conflict enough to manage it?",
                    "When must a conflict of interest be disclosed to a customer?",
                ),
            ),
            (
                "Investment research",
                "An Authorised Person which produces investment research must ensure that "
                "analysts are separated from its corporate finance and sales departments, that research is not shown to "
                "the subject company before publication except to check facts, and that analysts do not deal in "
                "Investments they cover for 30 days before or 5 days after publication.",
                (
                    "Can our analysts trade stocks they write research on?",
                    "Can a company see our research about it before it is published?",
                ),
            ),
            (
                "Outside business interests",
                "A Relevant Person must not accept a directorship or other outside "
                "business interest without the prior written approval of the Authorised Person. The Authorised Person "
                "must maintain a register of approved interests and review it at least annually for potential conflicts "
                "with Clients.",
                ("Can an employee become a director of another company?",),
            ),
        ],
    },
    {
        "book": "COB",
        "chapter": 7,
        "rules": [
            (
                "Complaints procedures",
                "An Authorised Person which deals with Retail Clients must establish written "
                "procedures for the effective consideration and proper handling of Complaints. The procedures must be "
                "published on its website and provided free of charge to any Client on request, and must name a "
                "Relevant Person responsible for overseeing Complaints.",
                (
                    "Do we need a written process for handling customer grievances?",
                    "Must our complaints policy be published online?",
                ),
            ),
            (
                "Acknowledgement of Complaints",
                "An Authorised Person must send a written acknowledgement of a "
                "Complaint within 5 business days of receipt, giving the name of the person handling it and an "
                "indication of when a response can be expected. A Complaint resolved to the Client's satisfaction by "
                "the end of the third Business Day after receipt need only be recorded.",
                (
                    "How soon should a firm acknowledge a customer complaint?",
                    "Is a letter needed if a complaint is sorted out within three days?",
                ),
            ),
            (
                "Final response",
                "An Authorised Person must send a final written response to the complainant within "
                "8 weeks of receiving the Complaint. If it cannot do so, it must explain in writing why it is not yet in "
                "a position to respond and when it expects to do so, and inform the complainant of the right to refer "
                "the Complaint to the Financial Services Ombudsman.",
                (
                    "What is the maximum time to give a complainant a final answer?",
                    "What do we do if we can't finish investigating a complaint within two months?",
                ),
            ),
            (
                "Referral to the Ombudsman",
                "A complainant who is a Retail Client may refer a Complaint to the "
                "Financial Services Ombudsman if dissatisfied with the final response or if no final response has been "
                "received within 8 weeks. The referral must be made within six months of the date of the final "
                "response, and the final response must state this time limit.",
                (
                    "Can an unhappy retail customer take their complaint to an ombudsman?",
                    "How long does a customer have to escalate a complaint after our final letter?",
                ),
            ),
            (
                "Complaints reporting",
                "An Authorised Person must submit to the Regulator a report of the Complaints "
                "received during each calendar year, within 30 days of the year end, showing the number of Complaints "
                "by product and cause, the number upheld and the total redress paid. Where redress paid in the year "
                "exceeds USD 250,000, the report must include an analysis of root causes.",
                (
                    "Do we have to send complaint statistics to the regulator?",
                    "When is a root cause analysis of complaints required?",
                ),
            ),
            (
                "Redress",
                "Where an Authorised Person upholds a Complaint, it must offer redress that is fair and "
                "appropriate, which may include compensation for financial loss, interest at a reasonable commercial "
                "rate and, where appropriate, an amount for distress and inconvenience of up to USD 5,000. Payment must "
                "be made within 28 days of the complainant's acceptance.",
                (
                    "How much can we pay a customer for distress and inconvenience?",
                    "How quickly must compensation be paid once the customer accepts our offer?",
                ),
            ),
            (
                "Independent investigation",
                "A Complaint must be investigated by a Relevant Person of sufficient "
                "competence who was not directly involved in the matter complained of. Where the Complaint concerns an "
                "Approved Individual, the investigation must be overseen by the Compliance Officer or by a member of the "
                "Governing Body.",
                (
                    "Can the salesperson involved investigate a complaint about their own advice?",
                    "Who oversees a complaint made about a senior approved person?",
                ),
            ),
        ],
    },
    {
        "book": "COB",
        "chapter": 8,
        "rules": [
            (
                "Best execution",
                "When executing an order on behalf of a Client, an Authorised Person must take all "
                "sufficient steps to obtain the best possible result, taking into account price, costs, speed, "
                "likelihood of execution and settlement, size and any other relevant consideration. For a Retail Client, "
                "the best possible result is determined in terms of the total consideration.",
                (
                    "What factors should a broker weigh to get the best outcome on an order?",
                    "For retail customers, how is the best result on a trade measured?",
                ),
            ),
            (
                "Order execution policy",
                "An Authorised Person must establish an order execution policy identifying, "
                "for each class of Financial Product, the execution venues it uses and the factors affecting its choice. "
                "It must obtain the Client's prior consent to the policy and the Client's express consent before "
                "executing orders outside a Trading Venue. The policy must be reviewed at least annually.",
                (
                    "Do we need client consent to execute their orders off-exchange?",
                    "How often should our execution policy be reviewed?",
                ),
            ),
            (
                "Aggregation and allocation",
                "An Authorised Person must not aggregate a Client order with an order for "
                "its own account or another Client unless aggregation is unlikely to work to the disadvantage of any "
                "Client. Where an aggregated order is partly executed, the trades must be allocated fairly under a "
                "pre-determined allocation policy, with Client orders given priority over own-account orders.",
                (
                    "Can a firm combine customer orders with its own trades?",
                    "How should a partially filled block order be split between clients?",
                ),
            ),
            (
                "Client limit orders",
                "Where a Client limit order in shares admitted to trading on a Trading Venue is "
                "not immediately executed under prevailing market conditions, the Authorised Person must, unless the "
                "Client expressly instructs otherwise, make the order public in a manner easily accessible to other "
                "market participants as soon as possible.",
                ("What should happen to a customer's limit order that can't be filled straight away?",),
            ),
            (
                "Prompt execution",
                "An Authorised Person must carry out comparable Client orders sequentially and "
                "promptly unless the characteristics of the order or prevailing market conditions make this "
                "impracticable. It must inform a Retail Client about any material difficulty relevant to the proper "
                "carrying out of an order promptly upon becoming aware of it.",
                (
                    "Must client orders be handled in the order they arrive?",
                    "Should a retail customer be told about problems executing their order?",
                ),
            ),
            (
                "Execution quality reports",
                "An Authorised Person must monitor the effectiveness of its order execution "
                "arrangements and, at least annually, publish on its website for each class of Financial Product the top "
                "five execution venues by trading volume used in the preceding year, together with a summary of the "
                "execution quality obtained.",
                ("Do we have to publish which venues we send client orders to?",),
            ),
        ],
    },
    {
        "book": "COB",
        "chapter": 9,
        "rules": [
            (
                "Segregation of Client Money",
                "An Authorised Person which holds Client Money must ensure that it is held "
                "in a Client Account with an Eligible Bank, separate from the Authorised Person's own money. Client Money "
                "must be paid into a Client Account promptly and in any event no later than the Business Day following "
                "receipt.",
                (
                    "Can customer funds be kept in the firm's own bank account?",
                    "How fast does money received from clients need to be moved into a client account?",
                ),
            ),
            (
                "Eligible Banks",
                "A Client Account may only be opened with a bank authorised by the Regulator or by a "
                "financial services regulator in a jurisdiction assessed as equivalent, with a credit rating of at least "
                "A- or equivalent. An Authorised Person must not place more than 20% of the total Client Money it holds "
                "with any single bank that is a member of its own Group.",
                (
                    "What credit rating does a bank need to hold client money accounts?",
                    "Is there a limit on depositing client money with a bank in our own group?",
                ),
            ),
            (
                "Acknowledgement letters",
                "Before paying Client Money into a Client Account, an Authorised Person must "
                "obtain a written acknowledgement from the bank that all money in the account is held for Clients, that "
                "the bank has no right of set-off against it for any debt of the Authorised Person, and that the title "
                "of the account includes the words Client Account.",
                (
                    "What confirmation do we need from the bank before using a client account?",
                    "Can the bank offset the firm's debts against money in the client account?",
                ),
            ),
            (
                "Daily reconciliation",
                "An Authorised Person must reconcile its internal records of Client Money "
                "against the balances in each Client Account at least once every Business Day. The reconciliation must "
                "be performed by an Employee who is independent of the staff responsible for producing the records, and "
                "must be completed by the end of the following Business Day.",
                (
                    "How often must a firm check its client money records against the bank statements?",
                    "Who is allowed to carry out client money reconciliations?",
                    "How frequently do we reconcile customer cash balances?",
                ),
            ),
            (
                "Reconciliation differences",
                "Where a reconciliation reveals a shortfall in Client Money, the Authorised "
                "Person must pay its own money into the Client Account to make up the shortfall by the close of business "
                "on the day the reconciliation is completed. Any shortfall exceeding USD 100,000 or 5% of total Client "
                "Money must be notified to the Regulator within one Business Day.",
                (
                    "What does a firm do if there is less money in the client account than its records show?",
                    "When does a client money shortfall have to be reported to the regulator?",
                ),
            ),
            (
                "Client Money held by Third Party Agents",
                "An Authorised Person may pass Client Money to a Third Party "
                "Agent, such as an exchange, clearing house or intermediate broker, only for the purpose of a transaction "
                "for the Client. Before doing so it must assess the agent's creditworthiness and obtain written "
                "confirmation that the money will be held in a segregated account for its Clients.",
                (
                    "Can we pass customer cash to a broker or clearing house?",
                    "What must be checked before handing client funds to an intermediate broker?",
                ),
                "cm_agents",
            ),
            (
                "Interest on Client Money",
                "An Authorised Person must pay to the Client any interest earned on Client "
                "Money unless it has notified the Client in writing, in the Client Agreement, that no interest or a lower "
                "rate will be paid. The basis on which interest is calculated must be disclosed before the first receipt "
                "of Client Money.",
                (
                    "Who gets the interest earned on money held for clients?",
                    "Do we have to tell customers how interest on their cash is calculated?",
                ),
            ),
            (
                "Unclaimed Client Money",
                "Where an Authorised Person has held Client Money for at least six years "
                "without any movement on the balance, and has taken reasonable steps to contact the Client, including "
                "writing to the last known address and allowing 28 days for a reply, it may pay the balance to a "
                "registered charity. It must undertake to repay the Client if a valid claim is later made.",
                (
                    "What can a firm do with dormant customer balances it cannot return?",
                    "After how many years can unclaimed client funds be given away?",
                ),
            ),
            (
                "Professional Client opt-out",
                "An Authorised Person may allow a Professional Client to opt out of the "
                "Client Money protections in this chapter, provided the Client has given express written consent after "
                "receiving a written explanation that its money will not be segregated and may be lost in the event of "
                "the Authorised Person's insolvency.",
                (
                    "Can a professional customer waive client money segregation?",
                    "What must we explain before an institutional client gives up client money protection?",
                ),
            ),
            (
                "Client Money auditor's report",
                "An Authorised Person which holds Client Money must arrange for its "
                "External Auditor to report to the Regulator annually on whether it has maintained systems adequate to "
                "comply with this chapter. The report must be submitted within four months of the Authorised Person's "
                "financial year end and must identify each breach found.",
                (
                    "Does an auditor need to report on our client money arrangements each year?",
                    "When is the external auditor's client money report due?",
                ),
            ),
            (
                "Payments from Client Accounts",
                "Client Money may be withdrawn from a Client Account only where it is "
                "paid to the Client or on the Client's written instruction, is due to the Authorised Person for fees "
                "properly incurred, or is transferred to a Third Party Agent under {ref_cm_agents}. Payments to a Client "
                "must be made within one Business Day of a valid request.",
                (
                    "When can money be taken out of a client account?",
                    "How long do we have to pay out cash a customer asks to withdraw?",
                ),
            ),
            (
                "Client Money records",
                "An Authorised Person must maintain records which enable it at any time and "
                "without delay to distinguish Client Money held for one Client from Client Money held for any other "
                "Client and from its own money. The records must show, for each Client, the amount held, the currency "
                "and the bank at which it is deposited.",
                ("What records do we need to tell one customer's money apart from another's?",),
            ),
            (
                "Client Money distribution",
                "If an Authorised Person fails, or the Regulator directs it to cease "
                "business, all Client Money held in Client Accounts is pooled and distributed to Clients in proportion to "
                "their entitlements. Any shortfall is borne rateably by all Clients, and a statement of each Client's "
                "claim must be prepared within 10 business days.",
                (
                    "What happens to clients' cash if the firm goes bust?",
                    "How is a shortfall shared among customers when a firm fails?",
                ),
            ),
            (
                "Client Money in foreign currencies",
                "Where an Authorised Person holds Client Money in a currency other "
                "than US dollars, it must hold it in a Client Account denominated in that currency unless the Client has "
                "agreed in writing to its conversion. Exchange differences identified on reconciliation must be made good "
                "by the Authorised Person from its own funds.",
                ("Do customer funds in euros have to be kept in a euro account?",),
            ),
        ],
    },
    {
        "book": "COB",
        "chapter": 10,
        "rules": [
            (
                "Registration of Client Investments",
                "An Authorised Person which holds or controls Client Investments "
                "must register them in the name of the Client, or of an Eligible Nominee or Eligible Custodian. They must "
                "not be registered in its own name unless, due to local law or market practice, there is no alternative, "
                "in which case the Authorised Person must notify the Client in writing.",
                (
                    "In whose name should customers' securities be registered?",
                    "When can client securities be held in the firm's own name?",
                ),
            ),
            (
                "Selection of custodians",
                "Before appointing an Eligible Custodian, an Authorised Person must undertake "
                "a risk assessment of the custodian, considering its regulatory status, expertise, credit rating and the "
                "legal regime in its jurisdiction. The assessment must be repeated at least annually and whenever there "
                "is a material change affecting the custodian.",
                (
                    "What due diligence is required on a sub-custodian?",
                    "How often must our choice of custodian be reassessed?",
                ),
            ),
            (
                "Custody reconciliations",
                "An Authorised Person must reconcile its records of Client Investments held by "
                "each Eligible Custodian with statements obtained from that custodian at least once every month, and "
                "count any physical documents of title at least every six months. Discrepancies must be resolved within "
                "10 business days or notified to the Regulator.",
                (
                    "How often should our records of client securities be matched against custodian statements?",
                    "What happens if a custody discrepancy is not fixed within two weeks?",
                ),
            ),
            (
                "Use of Client Investments",
                "An Authorised Person must not use Client Investments for its own account or "
                "for the account of another Client, including by way of securities lending or as collateral, unless the "
                "Client has given express prior consent in writing, and any use must be restricted to the terms of that "
                "consent.",
                (
                    "Can the firm lend out a customer's shares?",
                    "Do we need written permission to use client securities as collateral?",
                ),
            ),
            (
                "Custody agreements",
                "Before holding Client Investments with a third-party custodian, an Authorised "
                "Person must enter into a written agreement which provides that title to the Client Investments remains "
                "with the Client, that the custodian may not claim any lien except for fees relating to those Investments, "
                "and which sets out the procedures for instructions and reporting.",
                ("What must our contract with a custodian say about liens?",),
            ),
        ],
    },
    {
        "book": "COB",
        "chapter": 13,
        "rules": [
            (
                "Recognised Crypto Tokens",
                "An Authorised Person may only deal in, arrange or provide custody of a "
                "Crypto Token that has been recognised by the Regulator. In deciding on recognition, the Regulator "
                "considers the token's market capitalisation, liquidity, the maturity of its underlying technology and "
                "whether it is traded on at least two Trading Venues.",
                ("Which cryptocurrencies is a licensed firm allowed to deal in?",),
            ),
            (
                "Custody of Crypto Tokens",
                "An Authorised Person providing custody of Crypto Tokens must hold at least "
                "90% of Client Crypto Tokens in cold storage, must not hold private keys on any device connected to the "
                "internet other than its hot wallet, and must reconcile Client holdings against on-chain balances every "
                "Business Day.",
                (
                    "How much of customers' crypto must be kept offline?",
                    "How often do crypto holdings need to be reconciled against the blockchain?",
                ),
            ),
            (
                "Crypto Token risk disclosure",
                "Before carrying on business in Crypto Tokens with a Retail Client, an "
                "Authorised Person must provide a Key Features Document explaining the volatility of Crypto Tokens, the "
                "absence of any compensation scheme, the risks of loss of private keys and of cyber attacks, and that "
                "the Client may lose all of the money invested.",
                ("What must customers be told before they buy digital coins?",),
            ),
            (
                "Crypto Token exposure limit",
                "A Retail Client's aggregate exposure to Crypto Tokens through an "
                "Authorised Person must not exceed 10% of the Client's net assets, excluding their principal residence, "
                "and the Authorised Person must obtain an annual self-certification from the Client confirming that the "
                "limit is respected.",
                ("Is there a cap on how much a retail customer can hold in crypto?",),
            ),
        ],
    },
    {
        "book": "PRU",
        "chapter": 3,
        "rules": [
            (
                "Credit risk capital",
                "An Authorised Person in Category 1, 2 or 3A must calculate a Credit Risk Capital "
                "Requirement equal to 8% of its total risk-weighted exposures, using the standardised risk weights in "
                "App 4. Exposures to unrated corporates carry a risk weight of 100%, and residential mortgages with a "
                "loan-to-value ratio of 80% or less carry a risk weight of 35%.",
                (
                    "What risk weight applies to a loan to an unrated company?",
                    "How is the capital charge for credit risk calculated?",
                ),
                "credit_risk",
            ),
            (
                "Market risk capital",
                "An Authorised Person which holds positions in a Trading Book must calculate a "
                "Market Risk Capital Requirement covering interest rate, equity, foreign exchange and commodity risk. The "
                "foreign exchange risk capital charge is 8% of the net open position in all currencies where that "
                "position exceeds 2% of Capital Resources.",
                ("When does a currency position attract a capital charge?",),
            ),
            (
                "Operational risk capital",
                "An Authorised Person must calculate an Operational Risk Capital Requirement "
                "equal to 15% of its average annual gross income over the previous three financial years. Where it has "
                "been operating for less than three years, it must use the projected income in the business plan "
                "submitted to the Regulator.",
                (
                    "How is the capital charge for operational risk worked out?",
                    "What does a new firm with less than three years of income use for operational risk capital?",
                ),
            ),
            (
                "Expenditure Based Capital Minimum",
                "The Expenditure Based Capital Minimum of an Authorised Person is "
                "13/52 of its annual audited expenditure, excluding profit shares, bonuses and interest. The Authorised "
                "Person must recalculate it within 4 months of each financial year end and, where expenditure has risen "
                "by more than 20%, during the year.",
                (
                    "How do we work out the expenditure-based minimum capital?",
                    "When must the expenditure-based capital figure be recalculated?",
                ),
            ),
            (
                "Internal capital adequacy assessment",
                "An Authorised Person in Category 1, 2 or 3A must carry out an "
                "Internal Capital Adequacy Assessment Process at least annually to assess whether its Capital Resources "
                "are adequate to cover all material risks, including risks not captured by the Capital Requirement. The "
                "ICAAP document must be approved by the Governing Body and submitted within 4 months of the year end.",
                (
                    "How often does the internal capital adequacy assessment have to be done?",
                    "Who needs to sign off the ICAAP?",
                ),
            ),
        ],
    },
    {
        "book": "PRU",
        "chapter": 4,
        "rules": [
            (
                "Large Exposure limit",
                "An Authorised Person must not incur an exposure to a single counterparty or "
                "group of connected counterparties which, after eligible credit risk mitigation, exceeds 25% of its "
                "Capital Resources. Where the counterparty is a bank or another Authorised Person, the limit is the "
                "higher of 25% of Capital Resources and USD 150 million, but not more than 100% of Capital Resources.",
                (
                    "What is the maximum a firm can lend to one borrower relative to its capital?",
                    "Is the concentration limit different for exposures to banks?",
                ),
                "le_limit",
            ),
            (
                "Connected counterparties",
                "Two or more persons are a group of connected counterparties where one has "
                "direct or indirect control over the other, or where they are so interconnected that the financial "
                "difficulties of one would be likely to cause repayment difficulties for the other. An Authorised Person "
                "must document its assessment of connections for every exposure exceeding 5% of Capital Resources.",
                ("When should two borrowers be treated as one for concentration purposes?",),
            ),
            (
                "Breach of the Large Exposure limit",
                "Where an Authorised Person exceeds the limit in {ref_le_limit}, it "
                "must notify the Regulator immediately and, within 5 business days, submit a plan setting out how and by "
                "when it will return to compliance. Until compliance is restored, it must not incur any further exposure "
                "to the counterparty concerned.",
                (
                    "What should a firm do when it goes over its single-name exposure limit?",
                    "Can we extend more credit to a borrower after breaching the large exposures limit?",
                ),
            ),
            (
                "Intra-group exposures",
                "Exposures of an Authorised Person to members of its own Group are subject to "
                "the limits in this section unless the Regulator has granted a waiver, being satisfied that the Group is "
                "subject to consolidated supervision and that there is no impediment to the prompt transfer of capital. "
                "Exposures to Group members must in any case be reported quarterly.",
                ("Do concentration limits apply to loans to our parent company?",),
            ),
        ],
    },
    {
        "book": "PRU",
        "chapter": 5,
        "rules": [
            (
                "Liquidity Buffer",
                "An Authorised Person in Category 1 or 2 must hold a Liquidity Buffer of high quality "
                "liquid assets sufficient to cover its net cash outflows over a stress period of 30 days, so that its "
                "Liquidity Coverage Ratio is at least 100% at all times. Assets in the Liquidity Buffer must be "
                "unencumbered and under the control of the treasury function.",
                (
                    "How big must the pool of liquid assets be for a deposit-taking firm?",
                    "Can pledged assets count towards the liquidity buffer?",
                ),
            ),
            (
                "Liquidity stress testing",
                "An Authorised Person must carry out liquidity stress tests at least monthly, "
                "covering idiosyncratic, market-wide and combined scenarios. The results must be reported to Senior "
                "Management and used to set limits on funding concentration. The Governing Body must approve the stress "
                "scenarios at least annually.",
                (
                    "How often do we need to run liquidity stress tests?",
                    "Who approves the scenarios used for liquidity stress testing?",
                ),
            ),
            (
                "Contingency funding plan",
                "An Authorised Person must maintain a contingency funding plan setting out "
                "its strategies for addressing liquidity shortfalls in emergency situations, including early warning "
                "indicators, escalation procedures and available sources of funding. The plan must be tested at least "
                "annually and updated within 30 days of any material change in the business.",
                ("What should a contingency funding plan contain?",),
            ),
            (
                "Liquidity shortfalls",
                "Where an Authorised Person's Liquidity Coverage Ratio falls, or is expected to "
                "fall, below 100%, it must notify the Regulator within one Business Day and submit a restoration plan "
                "within 10 business days. The Regulator may require daily reporting of liquidity positions until the "
                "ratio is restored.",
                ("What do we do if our liquidity coverage ratio drops under 100%?",),
            ),
            (
                "Funding concentration",
                "An Authorised Person must monitor its reliance on any single source of "
                "funding. Where deposits or borrowings from a single depositor or group of connected depositors exceed "
                "10% of its total liabilities, it must report this in its monthly liquidity return and explain how the "
                "concentration is being managed.",
                ("Do we have to report it if one depositor provides a big share of our funding?",),
            ),
        ],
    },
    {
        "book": "AML",
        "chapter": 5,
        "rules": [
            (
                "When Customer Due Diligence is required",
                "An Authorised Person must undertake Customer Due Diligence "
                "when it establishes a business relationship, when it carries out an occasional transaction of USD "
                "15,000 or more, whether in a single operation or several linked operations, when it suspects money "
                "laundering, or when it doubts the adequacy of previously obtained identification data.",
                (
                    "When do we need to carry out KYC on a customer?",
                    "Is identity verification needed for a one-off transaction of 20,000 dollars?",
                ),
            ),
            (
                "Customer Due Diligence measures",
                "Customer Due Diligence requires an Authorised Person to identify the "
                "customer and verify its identity using reliable, independent documents; identify any Beneficial Owner "
                "and take reasonable measures to verify that person's identity; understand the purpose and intended "
                "nature of the business relationship; and, where appropriate, establish the source of funds.",
                (
                    "What does know-your-customer actually involve?",
                    "Do we need to understand why a customer wants to open an account?",
                ),
                "cdd_measures",
            ),
            (
                "Timing of verification",
                "Verification of identity must be completed before a business relationship is "
                "established. It may, however, be completed as soon as reasonably practicable afterwards, and in any case "
                "within 30 days, where this is necessary not to interrupt the normal conduct of business and the risk of "
                "money laundering is low, provided no funds are paid out to third parties in the meantime.",
                (
                    "Can we open an account before finishing identity checks?",
                    "How long can verification of a new customer be delayed?",
                ),
            ),
            (
                "Identification of Beneficial Owners",
                "Where the customer is a legal person, trust or other arrangement, "
                "an Authorised Person must identify each individual who holds, directly or indirectly, more than 25% of "
                "the shares or voting rights, or who otherwise exercises control. If there is no such individual, it must "
                "identify the senior managing official and record the steps taken.",
                (
                    "At what ownership percentage must we identify the people behind a corporate client?",
                    "What if no individual owns more than a quarter of a company?",
                ),
            ),
            (
                "Simplified due diligence",
                "An Authorised Person may apply Simplified Customer Due Diligence where it has "
                "assessed the customer as low risk, such as a company listed on a Recognised Exchange, a government body "
                "or another Authorised Person. Simplified measures must not be applied where there is a suspicion of "
                "money laundering, and the basis for the low-risk assessment must be recorded.",
                ("Can lighter KYC be applied to a listed company?", "When is reduced due diligence not permitted?"),
            ),
            (
                "Reliance on third parties",
                "An Authorised Person may rely on a regulated financial institution to "
                "perform Customer Due Diligence, provided the third party is supervised for anti-money laundering "
                "purposes, agrees to provide copies of identification data within 2 business days of a request, and is "
                "not located in a High Risk Jurisdiction. The Authorised Person remains responsible for compliance.",
                (
                    "Can we rely on another bank's KYC checks?",
                    "How quickly must a third party hand over identity documents when we rely on them?",
                ),
            ),
            (
                "Ongoing monitoring",
                "An Authorised Person must conduct ongoing monitoring of each business relationship, "
                "scrutinising transactions to ensure they are consistent with its knowledge of the customer. Customer "
                "Due Diligence information must be reviewed at least annually for high-risk customers, every three years "
                "for medium-risk customers and every five years for low-risk customers.",
                (
                    "How often should we refresh KYC on a high-risk customer?",
                    "What is the review cycle for low-risk clients' due diligence?",
                ),
            ),
            (
                "Failure to complete Customer Due Diligence",
                "Where an Authorised Person is unable to complete Customer "
                "Due Diligence, it must not establish the business relationship or carry out the transaction, must "
                "terminate any existing relationship, and must consider whether to make a Suspicious Activity Report. "
                "Funds received must be returned only to the account from which they came.",
                (
                    "What if a customer won't provide identification documents?",
                    "Can we return funds to a different account when we exit a customer who failed KYC?",
                ),
            ),
        ],
    },
    {
        "book": "AML",
        "chapter": 7,
        "rules": [
            (
                "Internal suspicion reports",
                "An Authorised Person must ensure that any Relevant Person who knows or "
                "suspects, or has reasonable grounds to suspect, that a person is engaged in money laundering or "
                "terrorist financing promptly reports the matter to the MLRO using an internal suspicion report. The "
                "Relevant Person discharges this obligation by making the report and need not investigate further.",
                (
                    "What should an employee do if they suspect a client is laundering money?",
                    "Does a member of staff have to investigate before reporting suspicious activity internally?",
                ),
            ),
            (
                "Suspicious Activity Reports",
                "Where the MLRO, after considering an internal suspicion report, determines "
                "that there are grounds for suspicion, the MLRO must file a Suspicious Activity Report with the Financial "
                "Intelligence Unit without delay and in any event within 2 business days of that determination. The MLRO "
                "must document the reasons for any decision not to file.",
                (
                    "How fast must the MLRO file a suspicious activity report?",
                    "Must the money laundering officer record why they chose not to report?",
                ),
            ),
            (
                "Tipping off",
                "An Authorised Person and its Relevant Persons must not disclose to the customer or to any "
                "third party that an internal suspicion report or a Suspicious Activity Report has been made, or that an "
                "investigation is being carried out, except to the Regulator or the Financial Intelligence Unit or as "
                "otherwise permitted by law.",
                ("Can we tell a customer that we have reported them to the authorities?",),
            ),
            (
                "MLRO annual report",
                "The MLRO must, at least annually, report to the Governing Body on the operation and "
                "effectiveness of the Authorised Person's anti-money laundering systems and controls, including the "
                "number of internal and external reports made, and must send a copy to the Regulator within 4 months of "
                "the financial year end.",
                (
                    "Does the money laundering officer have to report to the board each year?",
                    "When does the regulator get a copy of the MLRO report?",
                ),
            ),
            (
                "MLRO resources",
                "An Authorised Person must ensure that the MLRO has sufficient seniority, independence "
                "and resources, has unrestricted access to all customer records, and is resident in the State. The "
                "Authorised Person must appoint a deputy who can act as MLRO in the MLRO's absence.",
                (
                    "Does the MLRO need a deputy?",
                    "Must the money laundering officer have access to all customer files?",
                ),
            ),
            (
                "Transactions after a report",
                "Where a Suspicious Activity Report has been made, the Authorised Person "
                "must not proceed with the related transaction until it has received consent from the Financial "
                "Intelligence Unit or 7 business days have passed without a refusal, whichever is earlier.",
                ("Can we go ahead with a transaction after filing a suspicious activity report?",),
            ),
        ],
    },
    {
        "book": "AML",
        "chapter": 9,
        "rules": [
            (
                "Sanctions screening",
                "An Authorised Person must screen every customer, Beneficial Owner and payment "
                "counterparty against the sanctions lists published by the Regulator and the United Nations before "
                "establishing a business relationship and whenever the lists are updated. Screening of existing "
                "customers against updated lists must be completed within 24 hours.",
                (
                    "When must customers be checked against sanctions lists?",
                    "How quickly must existing clients be rescreened after a sanctions list update?",
                ),
            ),
            (
                "Freezing of assets",
                "Where screening produces a confirmed match, the Authorised Person must freeze "
                "without delay all funds and assets of the designated person that it holds, must not make any funds "
                "available to that person, and must notify the Regulator and the Financial Intelligence Unit within one "
                "Business Day, giving details of the assets frozen.",
                (
                    "What must a firm do with the assets of a sanctioned customer?",
                    "Who needs to be told when we freeze funds under sanctions?",
                ),
            ),
            (
                "Anti-money laundering training",
                "An Authorised Person must provide anti-money laundering training to "
                "all Relevant Persons at least annually, and to new Relevant Persons within 30 days of joining. Training "
                "must cover the law, the firm's procedures, how to recognise suspicious transactions and how to make an "
                "internal suspicion report, and attendance must be recorded.",
                (
                    "How soon do new joiners need money laundering training?",
                    "How frequently must staff take AML training?",
                ),
            ),
            (
                "Anti-money laundering records",
                "An Authorised Person must retain copies of identification documents, "
                "account files, business correspondence and transaction records for at least six years from the end of "
                "the business relationship or the date of the occasional transaction, or for longer if the Financial "
                "Intelligence Unit so requests.",
                ("How long do we keep KYC documents after a customer leaves?",),
            ),
            (
                "Business risk assessment",
                "An Authorised Person must undertake a money laundering risk assessment of "
                "its business, taking into account its customers, products, delivery channels and the jurisdictions "
                "with which it deals. The assessment must be documented, approved by Senior Management and updated at "
                "least every two years or when a significant change occurs.",
                ("How often must we update our firm-wide money laundering risk assessment?",),
            ),
            (
                "Wire transfers",
                "An Authorised Person that executes a wire transfer of USD 1,000 or more must ensure "
                "that it is accompanied by the full name, account number and address of the originator and the name and "
                "account number of the beneficiary. A receiving Authorised Person must have procedures to detect "
                "transfers lacking this information and to decide whether to reject or suspend them.",
                (
                    "What payer details must accompany an electronic funds transfer?",
                    "What should the receiving bank do with a payment missing originator information?",
                ),
            ),
            (
                "Shell Banks",
                "An Authorised Person must not establish or continue a correspondent relationship with a "
                "Shell Bank, and must take reasonable measures to satisfy itself that its respondent institutions do not "
                "permit their accounts to be used by Shell Banks.",
                ("Can a bank keep a correspondent account for a bank with no physical presence anywhere?",),
            ),
            (
                "Cash transactions",
                "An Authorised Person must not accept cash from a customer in excess of USD 10,000 "
                "in a single transaction, or in a series of linked transactions within 30 days, unless the MLRO has "
                "approved the transaction in writing after establishing the source of the cash.",
                ("Is there a limit on how much cash we can accept from a client?",),
            ),
        ],
    },
    {
        "book": "MKT",
        "chapter": 2,
        "rules": [
            (
                "Requirement for a Prospectus",
                "A person must not make an Offer of Securities to the Public in or from "
                "the State unless a Prospectus approved by the Regulator has been published. The Prospectus must be "
                "published at least 6 business days before the end of the offer period and remain available on the "
                "issuer's website for 12 months.",
                (
                    "Do we need an approved offering document before selling shares to the public?",
                    "How long before the offer closes does the prospectus have to be published?",
                ),
            ),
            (
                "Exempt offers",
                "A Prospectus is not required for an offer made only to Professional Clients, to fewer "
                "than 50 persons other than Professional Clients, or where the minimum consideration payable by each "
                "person is at least USD 100,000. The offeror must file a notice of any such exempt offer with the "
                "Regulator within 10 business days of its close.",
                (
                    "When can securities be offered without a prospectus?",
                    "Must an exempt private placement be notified to the regulator?",
                ),
            ),
            (
                "Supplementary Prospectus",
                "Where, between approval of a Prospectus and the close of the offer, a "
                "significant new factor, material mistake or inaccuracy arises, the issuer must submit a Supplementary "
                "Prospectus to the Regulator for approval without delay. Investors who have already agreed to subscribe "
                "may withdraw their acceptance within 2 business days after its publication.",
                (
                    "What happens if a material error is found in a prospectus during the offer?",
                    "Can investors pull out after a supplementary prospectus is published?",
                ),
            ),
            (
                "Prospectus content",
                "A Prospectus must contain all the information investors would reasonably require "
                "to make an informed assessment of the assets and liabilities, financial position, profits and losses "
                "and prospects of the issuer and of the rights attaching to the Securities, and must include a summary of "
                "no more than 7 pages and a responsibility statement signed by the directors.",
                (
                    "How long can the summary section of a prospectus be?",
                    "Who takes responsibility for the contents of an offering document?",
                ),
            ),
            (
                "Prospectus liability",
                "A person responsible for a Prospectus is liable to pay compensation to any "
                "person who has acquired the Securities and suffered loss as a result of any untrue or misleading "
                "statement in, or omission from, the Prospectus, unless they can show that they reasonably believed, "
                "having made enquiries, that the statement was true and not misleading.",
                ("Can investors claim compensation for a misleading prospectus?",),
            ),
            (
                "Advertisements for offers",
                "Any advertisement relating to an Offer of Securities to the Public must "
                "state that a Prospectus has been or will be published and where it can be obtained, must be consistent "
                "with the Prospectus, and must not be issued until the draft Prospectus has been submitted to the "
                "Regulator.",
                ("What must an advert for a share offering say?",),
            ),
        ],
    },
    {
        "book": "MKT",
        "chapter": 3,
        "rules": [
            (
                "Disclosure of Inside Information",
                "A Reporting Entity must disclose to the market, through a "
                "Regulatory Announcement Service, any Inside Information which directly concerns it as soon as possible. "
                "The information must not be combined with the marketing of its activities and must be posted on its "
                "website for at least 5 years.",
                (
                    "How fast must a listed company announce price-sensitive news?",
                    "How long must market announcements stay on the issuer's website?",
                ),
            ),
            (
                "Delayed disclosure",
                "A Reporting Entity may delay disclosure of Inside Information where immediate "
                "disclosure is likely to prejudice its legitimate interests, delay is not likely to mislead the public and "
                "confidentiality can be ensured. When it discloses the information, it must immediately inform the "
                "Regulator in writing of the delay and the reasons for it.",
                (
                    "Can a listed issuer postpone announcing inside information?",
                    "Does the regulator need to be told when an announcement was deferred?",
                ),
            ),
            (
                "Insider lists",
                "A Reporting Entity and any person acting on its behalf must draw up and maintain a list "
                "of all persons with access to Inside Information, stating the reason for inclusion and the date and time "
                "of access, and must update it promptly. Insider lists must be kept for at least 5 years and provided to "
                "the Regulator on request.",
                ("Do we need to keep a record of everyone who knows unpublished price-sensitive information?",),
            ),
            (
                "Managers' transactions",
                "A Person Discharging Managerial Responsibilities in a Reporting Entity, and "
                "persons closely associated with them, must notify the Reporting Entity and the Regulator of every "
                "transaction in its Securities within 3 business days once their total transactions in a calendar year "
                "reach USD 5,000. The Reporting Entity must make the information public within 2 further business days.",
                (
                    "When must a director report buying shares in their own company?",
                    "Is there a minimum value before managers' share dealings need reporting?",
                ),
            ),
            (
                "Closed periods",
                "A Person Discharging Managerial Responsibilities must not deal in the Securities of "
                "the Reporting Entity during a closed period of 30 calendar days before the announcement of an interim or "
                "annual financial report, unless the Reporting Entity permits the dealing in exceptional circumstances "
                "such as severe financial difficulty.",
                ("Can directors trade company shares shortly before results are published?",),
            ),
            (
                "Suspicious transaction and order reports",
                "An Authorised Person which arranges or executes "
                "transactions must have systems to detect and report suspicious orders and transactions that could "
                "constitute Market Abuse. A Suspicious Transaction and Order Report must be submitted to the Regulator "
                "without delay once a reasonable suspicion is formed.",
                ("Must a broker report suspected market manipulation by its clients?",),
            ),
        ],
    },
    {
        "book": "MKT",
        "chapter": 4,
        "rules": [
            (
                "Notification of major holdings",
                "A person must notify a Reporting Entity and the Regulator where the "
                "percentage of voting rights they hold reaches, exceeds or falls below 5% or any 1% threshold above 5%. "
                "The notification must be made within 4 business days of the transaction, and the Reporting Entity must "
                "publish it by the end of the following Business Day.",
                (
                    "At what stake does an investor have to disclose their shareholding?",
                    "How quickly must a shareholder report crossing a voting rights threshold?",
                ),
                "major_holdings",
            ),
            (
                "Aggregation of holdings",
                "For the purposes of {ref_major_holdings}, a person's voting rights include "
                "those held by a nominee, by an undertaking it controls, and by a third party with whom it has agreed to "
                "adopt a lasting common policy on voting. Financial Instruments giving a right to acquire shares are "
                "aggregated with shares held.",
                ("Do shares held through a nominee count toward disclosure thresholds?",),
            ),
            (
                "Market maker exemption",
                "Voting rights held by an Authorised Person acting as a market maker are "
                "disregarded for the purposes of major holdings notifications up to 10%, provided it does not intervene "
                "in the management of the issuer and has notified the Regulator that it is acting as a market maker.",
                ("Are market makers exempt from disclosing large shareholdings?",),
            ),
            (
                "Issuer's own shares",
                "Where a Reporting Entity acquires or disposes of its own shares, directly or "
                "through a person acting on its behalf, it must make public the resulting proportion as soon as possible "
                "and not later than 4 business days where the proportion reaches, exceeds or falls below 5% or 10% of "
                "the voting rights.",
                ("Does a company have to announce buybacks of its own shares?",),
            ),
        ],
    },
    {
        "book": "MKT",
        "chapter": 5,
        "rules": [
            (
                "Annual financial report",
                "A Reporting Entity must prepare and make public an annual financial report, "
                "audited and prepared in accordance with IFRS, within 4 months of the end of each financial year. The "
                "report must include a management report and a responsibility statement from the directors, and must "
                "remain publicly available for at least 10 years.",
                (
                    "What's the deadline for a listed company's annual accounts?",
                    "How long must annual reports be kept publicly available?",
                ),
            ),
            (
                "Half-yearly report",
                "A Reporting Entity must make public a half-yearly financial report covering the "
                "first six months of the financial year as soon as possible and no later than 2 months after the end of "
                "that period. The half-yearly report need not be audited, but if it has been reviewed by an auditor the "
                "review report must be included.",
                (
                    "Does an interim report have to be audited?",
                    "When should the six-monthly financial report be published?",
                ),
            ),
            (
                "Corporate governance statement",
                "A Reporting Entity must include in its annual financial report a "
                "corporate governance statement explaining how it has applied the Corporate Governance Code and, where it "
                "has not complied with a provision, the reasons for not doing so. At least one third of its board must be "
                "independent non-executive directors.",
                (
                    "What proportion of a listed company's board must be independent?",
                    "Must a listed issuer explain departures from the governance code?",
                ),
            ),
            (
                "Related party transactions",
                "Before entering into a transaction with a Related Party whose value "
                "exceeds 5% of its net assets, a Reporting Entity must obtain the approval of its shareholders at a "
                "general meeting, with the Related Party and its associates abstaining, and must publish an announcement "
                "containing a fair and reasonable opinion from an independent adviser.",
                ("When does a deal with a major shareholder need shareholder approval?",),
            ),
            (
                "Equal treatment of shareholders",
                "A Reporting Entity must ensure equal treatment of all holders of "
                "Securities of the same class in respect of all rights attaching to them, and must make available all "
                "information necessary to enable holders to exercise their rights, including notice of general meetings "
                "at least 21 days in advance.",
                ("How much notice must shareholders get of a general meeting?",),
            ),
        ],
    },
    {
        "book": "MKT",
        "chapter": 6,
        "rules": [
            (
                "Operating rules of trading venues",
                "An Authorised Market Institution must have transparent and "
                "non-discriminatory rules governing access to its facilities, the admission of Securities to trading and "
                "the conduct of its members, and must publish its rules on its website. Amendments must be submitted to "
                "the Regulator at least 20 business days before they take effect.",
                ("How much notice does the regulator need of changes to an exchange's rulebook?",),
            ),
            (
                "Trading halts",
                "An Authorised Market Institution must be able to halt or constrain trading temporarily "
                "where there is a significant price movement in a Security within a short period, and must publish the "
                "parameters of its circuit breakers. It must notify the Regulator of any halt lasting longer than 30 "
                "minutes.",
                ("When must an exchange tell the regulator about a trading halt?",),
            ),
            (
                "Transaction reporting",
                "An Authorised Person which executes a transaction in a Security admitted to "
                "trading on a Trading Venue must report the details of the transaction to the Regulator as quickly as "
                "possible and no later than the close of the following Business Day. The report must identify the Client "
                "by a Legal Entity Identifier or national identifier.",
                (
                    "By when must trades be reported to the regulator?",
                    "How should the client be identified in a transaction report?",
                ),
            ),
            (
                "Clock synchronisation",
                "Operators of Trading Venues and their members must synchronise the business "
                "clocks used to record reportable events to Coordinated Universal Time, with a maximum divergence of 1 "
                "millisecond for high-frequency algorithmic trading and 1 second for voice trading systems.",
                ("How accurate must trading system clocks be?",),
            ),
            (
                "Algorithmic trading",
                "An Authorised Person engaging in algorithmic trading must have effective systems "
                "and risk controls, including pre-trade limits on price and volume, a kill functionality to cancel all "
                "unexecuted orders immediately, and an annual self-assessment of its algorithms. It must notify the "
                "Regulator and the Trading Venue before deploying an algorithm for the first time.",
                (
                    "What controls are required for computer-driven trading?",
                    "Do we have to tell the exchange before using a new trading algorithm?",
                ),
            ),
            (
                "Net short positions",
                "A person must notify the Regulator of any net short position in the shares of a "
                "Reporting Entity reaching or falling below 0.2% of issued share capital, and each 0.1% above that, by "
                "3:30 pm on the following trading day. Positions at or above 0.5% must also be disclosed to the public.",
                (
                    "When does a short position need to be disclosed publicly?",
                    "At what level must a net short position be reported to the regulator?",
                ),
            ),
        ],
    },
    {
        "book": "MKT",
        "chapter": 7,
        "rules": [
            (
                "Insider dealing",
                "A person who possesses Inside Information must not deal, or attempt to deal, in "
                "Securities to which the information relates, must not recommend or induce another person to do so, and "
                "must not disclose the information otherwise than in the proper course of their employment, profession "
                "or duties.",
                ("Can someone tip off a friend about unpublished company news?",),
            ),
            (
                "Market manipulation",
                "A person must not enter into a transaction or place an order which gives, or is "
                "likely to give, a false or misleading impression as to the supply of, demand for or price of a Security, "
                "or secures its price at an abnormal or artificial level, unless the person establishes that it acted for "
                "legitimate reasons and in conformity with accepted market practice.",
                ("Is placing orders to create a false impression of demand prohibited?",),
            ),
            (
                "Misleading statements",
                "A person must not disseminate information, including through the media or the "
                "internet, which gives or is likely to give false or misleading signals as to a Security where that "
                "person knew or ought to have known that the information was false or misleading.",
                ("Can spreading false rumours about a stock on social media be market abuse?",),
            ),
            (
                "Market soundings",
                "A person disclosing Inside Information in the course of a market sounding must "
                "obtain the recipient's consent to receive it, inform the recipient that they are prohibited from "
                "dealing, and keep a written record of all information given for at least 5 years.",
                ("What must we tell an investor we sound out before a deal?",),
            ),
        ],
    },
    {
        "book": "CIF",
        "chapter": 3,
        "rules": [
            (
                "Fund Manager",
                "A Fund may only be managed by a Fund Manager that is an Authorised Person whose Licence "
                "permits it to manage a Collective Investment Fund. The Fund Manager is responsible for managing the Fund "
                "Property, maintaining the Fund's records, and ensuring that the Fund is operated in accordance with its "
                "Constitution and Prospectus.",
                ("Who is allowed to manage an investment fund?",),
            ),
            (
                "Eligible Custodian of a Public Fund",
                "The Fund Manager of a Public Fund must appoint an Eligible "
                "Custodian, independent of the Fund Manager, to hold the Fund Property. The custodian must be an "
                "Authorised Person or a bank regulated in a Recognised Jurisdiction, with own funds of at least USD 10 "
                "million.",
                ("Does a public fund need an independent depositary?", "What capital must a fund's custodian have?"),
            ),
            (
                "Oversight Committee",
                "The Fund Manager of a Public Fund must establish an Oversight Committee of at "
                "least three individuals, the majority of whom are independent, to monitor whether the Fund is managed in "
                "accordance with its Constitution, its Prospectus and these Rules. The committee must report to "
                "Unitholders in the annual report.",
                (
                    "Who checks that a public fund follows its constitution?",
                    "How many members must a fund's oversight committee have?",
                ),
            ),
            (
                "Valuation of Fund Property",
                "The Fund Manager must value the Fund Property on each Dealing Day, and at "
                "least weekly for a Public Fund, at fair value in accordance with the valuation policy in the Prospectus. "
                "The valuation must be carried out by a person independent of the portfolio management function, or "
                "checked by the Eligible Custodian.",
                (
                    "How frequently must a public fund's assets be valued?",
                    "Can the portfolio manager value the fund's holdings themselves?",
                ),
            ),
            (
                "Pricing errors",
                "Where an error in the price of Units exceeds 0.5% of the Net Asset Value per Unit, the "
                "Fund Manager must compensate affected Unitholders and the Fund, unless the amount payable to a "
                "Unitholder is less than USD 20. Such errors must be notified to the Regulator and to the Eligible "
                "Custodian within 5 business days of discovery.",
                (
                    "When must investors be compensated for a mispriced fund?",
                    "Does a fund pricing mistake have to be reported?",
                ),
            ),
            (
                "Suspension of dealings",
                "The Fund Manager may, with the prior agreement of the Eligible Custodian, "
                "temporarily suspend the issue and redemption of Units where, due to exceptional circumstances, this is "
                "in the interests of Unitholders. It must notify the Regulator immediately, inform Unitholders as soon as "
                "practicable, and review the suspension at least every 28 days.",
                (
                    "Can a fund stop investors from redeeming?",
                    "How often must a suspension of fund dealing be reviewed?",
                ),
            ),
            (
                "Fund reports",
                "The Fund Manager must prepare an annual report for each Fund, including audited "
                "financial statements, a report of the Fund Manager and the Oversight Committee's report, and must "
                "publish it and send it to the Regulator within 4 months of the end of the Fund's financial year. "
                "Half-yearly reports must be published within 2 months of the end of the period.",
                ("When is a fund's annual report due?",),
            ),
            (
                "Unitholder meetings",
                "A meeting of Unitholders must be convened by at least 21 days' written notice. A "
                "resolution to make a fundamental change to the Fund, such as a change in its investment objective, "
                "requires approval by Unitholders holding at least 75% of the Units voted, and the quorum is two "
                "Unitholders present in person or by proxy.",
                (
                    "What majority is needed to change a fund's investment objective?",
                    "How much notice must investors get of a fund meeting?",
                ),
            ),
            (
                "Notice of significant changes",
                "The Fund Manager must give Unitholders at least 60 days' written notice "
                "before implementing a significant change to the Fund, such as an increase in fees or a change to the "
                "dealing frequency, so that Unitholders can redeem their Units before it takes effect. The Prospectus "
                "must be updated within 14 days of any change.",
                (
                    "How much warning must investors get before a fund raises its fees?",
                    "How soon must a fund's prospectus be updated after a change?",
                ),
            ),
            (
                "Exempt Funds",
                "An Exempt Fund may only be offered by way of private placement to Professional Clients, "
                "must have no more than 100 Unitholders, and must require a minimum initial subscription of USD 50,000. "
                "An Exempt Fund must be registered with the Regulator within 5 business days of its first close.",
                (
                    "What is the maximum number of investors in an exempt fund?",
                    "What's the minimum investment in a privately placed fund?",
                ),
            ),
            (
                "Property Funds",
                "A Property Fund must invest at least 60% of its Net Asset Value in Real Property, "
                "directly or through special purpose vehicles, and may borrow up to 50% of its gross asset value. Each "
                "Real Property asset must be valued by an independent valuer at least annually and before any purchase "
                "or sale.",
                (
                    "How much of a real estate fund has to be in property?",
                    "How much leverage can a real estate fund take on?",
                ),
            ),
            (
                "Fund Prospectus",
                "The Fund Manager of a Public Fund must prepare a Prospectus containing the Fund's "
                "investment objective and policy, risk factors, fees and charges, dealing arrangements and valuation "
                "policy. The Prospectus must be lodged with the Regulator at least 10 business days before the Fund is "
                "offered to the public.",
                ("How far in advance must a fund's offering document be lodged with the regulator?",),
            ),
            (
                "Money Market Funds",
                "A Money Market Fund must invest only in high-quality money market instruments and "
                "deposits, with a weighted average maturity of no more than 60 days, and must hold at least 10% of its "
                "assets in instruments maturing within one Business Day.",
                ("What is the maximum average maturity for a money market fund?",),
            ),
        ],
    },
]

# ---------------------------------------------------------------- building rules


def capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def rule_number(book: str, chapter: int, index: int, flat_section: int | None = None) -> str:
    """'COB 9.2.3': four rules to a section, unless the chapter is one flat section."""
    if flat_section is not None:
        return f"{book} {chapter}.{flat_section}.{index + 1}"
    return f"{book} {chapter}.{index // 4 + 1}.{index % 4 + 1}"


def family_skeletons(family: dict) -> list[dict]:
    """One unrendered rule per subject of a templated family."""
    rules = []
    for index, values in enumerate(family["subjects"]):
        fields = dict(zip(family["fields"], values))
        fields["S"] = capitalise(fields.get("s", ""))
        rules.append(
            {
                "book": family["book"],
                "fields": fields,
                "family": family,
                "number": rule_number(family["book"], family["chapter"], index, family.get("flat_section")),
                "title": family["title"].format(**fields),
            }
        )
    return rules


def handwritten_skeletons(group: dict) -> list[dict]:
    rules = []
    for index, (title, body, questions, *key) in enumerate(group["rules"]):
        rules.append(
            {
                "book": group["book"],
                "body": body,
                "questions": list(questions),
                "key": key[0] if key else None,
                "number": rule_number(group["book"], group["chapter"], index),
                "title": title,
            }
        )
    return rules


def all_skeletons() -> list[dict]:
    """Every rule, ordered by rulebook and number (as a rulebook is printed)."""
    rules = [rule for family in FAMILIES for rule in family_skeletons(family)]
    rules += [rule for group in HANDWRITTEN for rule in handwritten_skeletons(group)]
    books = ["GEN", "COB", "PRU", "AML", "MKT", "CIF"]

    def order(rule: dict) -> tuple:
        book, numbers = rule["number"].split(" ")
        return (books.index(book), *(int(part) for part in numbers.split(".")))

    return sorted(rules, key=order)


def cross_reference(rule: dict, rules: list[dict], rng: random.Random, same_book: bool) -> str:
    """Another rule's number: 'Rule 4.1.3' within the rulebook (or 'COB 4.1.3'), else 'AML 5.1.2'."""
    others = [r for r in rules if (r["book"] == rule["book"]) == same_book and r is not rule]
    number = rng.choice(others)["number"]
    return f"Rule {number.split(' ')[1]}" if same_book and rng.random() < 0.7 else number


def slot_values(rule: dict, rules: list[dict], keyed: dict[str, str], rng: random.Random) -> dict[str, str]:
    """The values a rule's templates may use: random numbers, cross-references and named references."""
    family = rule.get("family") or {}
    slots = {**DEFAULT_SLOTS, **family.get("slots", {})}
    values = {name: rng.choice(choices) for name, choices in slots.items()}
    values["xref"] = cross_reference(rule, rules, rng, same_book=True)
    values["xbook"] = cross_reference(rule, rules, rng, same_book=False)
    values.update({f"ref_{key}": number for key, number in keyed.items()})
    return values


def with_boilerplate(body: str, values: dict[str, str], rng: random.Random) -> str:
    """Append a stock sentence to short rules (always) or to some others, staying within the word limit."""
    addon = rng.choice(ADDONS).format_map(values)
    words = len(body.split()) + len(addon.split())
    if words <= PASSAGE_WORDS[1] and (len(body.split()) < 55 or rng.random() < 0.3):
        return f"{body} {addon}"
    return body


def family_questions(rule: dict, rng: random.Random) -> list[str]:
    """1-3 questions from the family's templates, each with a different paraphrase where possible."""
    family, fields = rule["family"], rule["fields"]
    paraphrases = fields["q"].split("|")
    count = rng.choice([1, 1, 1, 2, 2, 3])
    templates = rng.sample(family["questions"], count)
    start = rng.randrange(len(paraphrases))
    return [t.format(**{**fields, "q": paraphrases[(start + i) % len(paraphrases)]}) for i, t in enumerate(templates)]


def cite_rule(question: str, number: str, rng: random.Random) -> str:
    """Sometimes a question names the rule it is about, as compliance staff often do."""
    if rng.random() >= CITE_SHARE:
        return question
    first, rest = question.split(" ", 1)
    first = first if first.isupper() else first.lower()
    return rng.choice(CITE_PREFIXES).format(rule=number) + f"{first} {rest}"


def render_rules(rng: random.Random) -> list[dict]:
    """Rules with their final text and questions."""
    skeletons = all_skeletons()
    keyed = {rule["key"]: rule["number"] for rule in skeletons if rule.get("key")}
    rules = []
    for index, rule in enumerate(skeletons):
        values = slot_values(rule, skeletons, keyed, rng)
        if "family" in rule:
            body = rule["family"]["bodies"][index % len(rule["family"]["bodies"])]
            body = body.format_map({**values, **rule["fields"]})
            questions = family_questions(rule, rng)
        else:
            body = rule["body"].format_map(values)
            questions = rule["questions"]
        rules.append(
            {
                "number": rule["number"],
                "title": f"{rule['number']} {rule['title']}",
                "topic": rule["title"],
                "text": with_boilerplate(body, values, rng),
                "questions": [cite_rule(q, rule["number"], rng) for q in questions],
            }
        )
    return rules


def guidance_topic(title: str) -> str:
    """'Daily reconciliation' -> 'daily reconciliation'; 'Client Money records' keeps its defined term."""
    words = title.split()
    if words[0].isupper() or (len(words) > 1 and words[1][:1].isupper()):
        return title
    return title[:1].lower() + title[1:]


def add_guidance(rules: list[dict], rng: random.Random) -> list[dict]:
    """Insert a guidance note after some rules; the note is a second answer to one of the rule's questions."""
    chosen = set(rng.sample(range(len(rules)), round(GUIDANCE_SHARE * len(rules))))
    passages = []
    for index, rule in enumerate(rules):
        passages.append(rule)
        if index in chosen:
            number = rule["number"].split(" ")[1]
            text = rng.choice(GUIDANCE).format(num=number, topic=guidance_topic(rule["topic"]))
            passages.append(
                {
                    "number": rule["number"],
                    "title": f"{rule['number']} Guidance: {rule['topic']}",
                    "text": text,
                    "questions": [],
                }
            )
            rule["guidance"] = len(passages) - 1
    return passages


# ---------------------------------------------------------------- questions and splits


def make_queries(passages: list[dict]) -> list[dict]:
    """One query per distinct question, with the passages that answer it (by index)."""
    queries, seen = [], set()
    for index, passage in enumerate(passages):
        for position, question in enumerate(passage["questions"]):
            if question in seen:
                continue
            seen.add(question)
            relevant = [index]
            if "guidance" in passage and position == len(passage["questions"]) - 1:
                relevant.append(passage["guidance"])
            queries.append({"text": question, "relevant": relevant, "anchor": position == 0})
    return queries


def split_queries(queries: list[dict], rng: random.Random) -> None:
    """Mark each query 'train' or 'dev': all questions of some rules go to dev (rules unseen in training);
    the rest of dev comes from second and later questions of rules that keep a train question."""
    rules = sorted({q["relevant"][0] for q in queries})
    dev_only = set(rng.sample(rules, round(DEV_ONLY_SHARE * len(rules))))
    for query in queries:
        query["split"] = "dev" if query["relevant"][0] in dev_only else "train"
    wanted = round(DEV_SHARE * len(queries)) - sum(q["split"] == "dev" for q in queries)
    candidates = [q for q in queries if q["split"] == "train" and not q["anchor"]]
    for query in rng.sample(candidates, min(max(wanted, 0), len(candidates))):
        query["split"] = "dev"


# ---------------------------------------------------------------- writing


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def write_sample(passages: list[dict], queries: list[dict], out_dir: Path) -> dict[str, int]:
    """Write the BEIR files and the training pairs; return counts for the summary line."""
    (out_dir / "qrels").mkdir(parents=True, exist_ok=True)
    doc_ids = [f"doc{i + 1:04d}" for i in range(len(passages))]
    write_jsonl(
        out_dir / "corpus.jsonl",
        [{"_id": d, "title": p["title"], "text": p["text"]} for d, p in zip(doc_ids, passages)],
    )
    query_ids = [f"q{i + 1:04d}" for i in range(len(queries))]
    write_jsonl(out_dir / "queries.jsonl", [{"_id": qid, "text": q["text"]} for qid, q in zip(query_ids, queries)])
    pairs = []
    for split in ("train", "dev"):
        lines = ["query-id\tcorpus-id\tscore\n"]
        for qid, query in zip(query_ids, queries):
            if query["split"] != split:
                continue
            for index in query["relevant"]:
                lines.append(f"{qid}\t{doc_ids[index]}\t1\n")
                if split == "train":  # the positive exactly as data.load_beir builds corpus text
                    pairs.append(
                        {"anchor": query["text"], "positive": f"{passages[index]['title']} {passages[index]['text']}"}
                    )
        (out_dir / "qrels" / f"{split}.tsv").write_text("".join(lines), encoding="utf-8")
    write_jsonl(out_dir / "train_pairs.jsonl", pairs)
    return {
        "passages": len(passages),
        "train": sum(q["split"] == "train" for q in queries),
        "dev": sum(q["split"] == "dev" for q in queries),
        "pairs": len(pairs),
    }


def main() -> None:
    rng = random.Random(SEED)
    passages = add_guidance(render_rules(rng), rng)
    queries = make_queries(passages)
    rng.shuffle(queries)  # so that query ids do not follow the rulebook order
    split_queries(queries, rng)
    counts = write_sample(passages, queries, OUT_DIR)
    print(
        f"wrote {OUT_DIR}: {counts['passages']} passages, {counts['train']} train and {counts['dev']} dev "
        f"questions, {counts['pairs']} train pairs"
    )


if __name__ == "__main__":
    main()
