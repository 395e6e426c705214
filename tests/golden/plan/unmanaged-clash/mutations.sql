-- A dataset created in the Studio's UI, with the name a manifest uses; ftctl does not manage it.
INSERT INTO datasets (id, type, name, description, location, features) VALUES
  ('0b7e4a52-6c1d-4f3e-8a29-5d4c3b2a1f00', 'project_csv', 'tickets', 'uploaded by hand', 'data/tickets.csv',
   '["instruction", "intent"]');
