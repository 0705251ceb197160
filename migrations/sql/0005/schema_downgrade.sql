-- Undoes schema.sql of revision 0005.
DROP TABLE unlock_feedback;
DROP TABLE conversation_messages;
DROP TABLE conversations;
