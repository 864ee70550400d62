"""End-to-end studies: the three families trained side by side at equal compute (``runner``), and the
report that answers the notes' questions from the results (``report``)."""
