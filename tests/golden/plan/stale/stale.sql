-- Someone edits the dataset in the Studio between `ftctl plan -o` and `ftctl apply`.
UPDATE datasets SET description = 'edited in the Studio' WHERE name = 'tickets';
