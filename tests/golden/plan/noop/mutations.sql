-- What the Studio does to rows without changing them: it re-serialises config bodies (other key
-- order and spacing), carries floats at float32 precision, and writes '' where ftctl wrote NULL.
-- None of this is a change.
UPDATE configs SET config = '{"task_type":"CAUSAL_LM","bias":"none","lora_dropout":0.05,"lora_alpha":16,"r":8}' WHERE description = 'lora-r8';
UPDATE fine_tuning_jobs SET train_test_split = 0.8999999761581421 WHERE adapter_name = 'tickets-lora';
UPDATE datasets SET huggingface_name = '' WHERE name = 'tickets';
