"""What runs leave behind and what is made of it: the typed run record (:mod:`.record`), the
tables printed for a protocol (:mod:`.tables`), leaderboards (:mod:`.leaderboard`), the HTML
report of a run (:mod:`.report`) and its plots (:mod:`.plots`)."""
