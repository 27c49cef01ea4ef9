"""Training: one loop (:mod:`.fit`), one recipe type (:mod:`.recipe`), resumable batch streams
(:mod:`.streams`), the seeding policy (:mod:`.seeding`), and the regime contract (:mod:`.regime`)."""
