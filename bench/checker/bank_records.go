package checker

import (
	"fmt"
	"time"
)

// The bank's record types, as the bank workload writes them into the
// history (JSON in Attrs["v"] of process history.Resource entries; see
// BankHistory). The checker owns them: it decodes the history itself and
// imports no implementation. Field names and JSON tags follow the
// workload's encoding of impl/txn's snapshot (a round-trip test in
// bench/workload keeps them in step).

// Transfer statuses (BankTransfer.Status), as the history types.
const (
	StatusOK   = "ok"   // money moved (or will: the decision is durable)
	StatusFail = "fail" // definitely not moved
	StatusInfo = "info" // indeterminate
)

// TCC/saga journal vocabulary (JournalRow.Op, JournalRow.Branch).
const (
	BranchDebit  = "debit"
	BranchCredit = "credit"
	OpTry        = "try"
	OpConfirm    = "confirm"
	OpCancel     = "cancel"
	OpAction     = "action"
	OpCompensate = "compensate"
)

// Account names one account: Node is the participant index (0 = A), ID
// its primary key there.
type Account struct {
	Node int `json:"node"`
	ID   int `json:"id"`
}

// String is "A:3".
func (a Account) String() string { return fmt.Sprintf("%s:%d", NodeName(a.Node), a.ID) }

// NodeName is "A" for 0, "B" for 1, … .
func NodeName(i int) string {
	if i >= 0 && i < 26 {
		return string(rune('A' + i))
	}
	return fmt.Sprintf("N%d", i)
}

// Transfer moves Amount from From to To.
type Transfer struct {
	ID     string  `json:"id"`
	From   Account `json:"from"`
	To     Account `json:"to"`
	Amount int64   `json:"amount"`
}

// MsgID is the outbox message id of a transfer.
func MsgID(transferID string) string { return "fl:msg:" + transferID }

// AccountRow is one account's row.
type AccountRow struct {
	Account
	Balance int64 `json:"balance"`
	Frozen  int64 `json:"frozen"`  // TCC: reserved by a try (the owner's money)
	Pending int64 `json:"pending"` // TCC: incoming, not yet the owner's money
}

// PreparedRow is a row of pg_prepared_xacts.
type PreparedRow struct {
	Node     int       `json:"node"`
	GID      string    `json:"gid"`
	Prepared time.Time `json:"prepared"`
	Database string    `json:"database"`
}

// JournalRow is one TCC/saga branch call that reached a participant.
type JournalRow struct {
	Node    int       `json:"node"`
	Seq     int64     `json:"seq"`
	GID     string    `json:"gid"`
	Branch  string    `json:"branch"`
	Op      string    `json:"op"`
	Account int       `json:"account"`
	Amount  int64     `json:"amount"`
	Applied bool      `json:"applied"` // false: neutralised by a barrier
	At      time.Time `json:"at"`
}

// OutboxRow is one committed outbox message.
type OutboxRow struct {
	Node       int       `json:"node"`
	MsgID      string    `json:"msg_id"`
	TransferID string    `json:"transfer_id"`
	To         Account   `json:"to"`
	Amount     int64     `json:"amount"`
	CreatedAt  time.Time `json:"created_at"`
	SentAt     time.Time `json:"sent_at"`   // zero: not marked sent
	Published  int       `json:"published"` // the relay's publishes
}

// InboxRow is one message a consumer handled.
type InboxRow struct {
	Node       int       `json:"node"`
	Seq        int64     `json:"seq"`
	MsgID      string    `json:"msg_id"`
	TransferID string    `json:"transfer_id"`
	Account    int       `json:"account"`
	Amount     int64     `json:"amount"`
	Applied    bool      `json:"applied"` // false: dedup skipped it
	At         time.Time `json:"at"`
}

// GlobalRow is an unfinished TCC or saga transaction.
type GlobalRow struct {
	GID        string    `json:"gid"`
	Protocol   string    `json:"protocol"`
	State      string    `json:"state"`
	TransferID string    `json:"transfer_id"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// BankSnapshot is the bank's state after quiescence and recovery.
type BankSnapshot struct {
	TakenAt   time.Time     `json:"taken_at"`
	Accounts  []AccountRow  `json:"accounts"`
	Prepared  []PreparedRow `json:"prepared,omitempty"`
	Journal   []JournalRow  `json:"journal,omitempty"`
	Outbox    []OutboxRow   `json:"outbox,omitempty"`
	Inbox     []InboxRow    `json:"inbox,omitempty"`
	Globals   []GlobalRow   `json:"globals,omitempty"`
	Decisions int           `json:"-"` // size of the 2PC decision log
}
