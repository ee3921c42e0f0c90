"""Reports built from run folders: the leaderboard table (and, later, HTML with plots)."""
