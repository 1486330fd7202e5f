"""Label vocabulary: MeSH lookup, normalization rules, hierarchy relations, tagging, lexical tree."""
